/**
 * Pushes one local tag through the daemon (`POST /images/{name}/push`) and reads the whole stream:
 * `push.progress` per layer, the pushed digest from the final aux `{ Tag, Digest, Size }`, and any
 * error (reported inside the 200 response) as AuthError or PushFailedError — never with credentials.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { AuthError, KilnError, PushFailedError, RateLimitError, type EventListener } from "@kiln/core";
import { emit } from "@kiln/core/plugin";
import type { DockerDaemon } from "../daemon/daemon.js";
import { readJsonMessages } from "../daemon/jsonStream.js";

export interface PushResult {
  digest: string;
  /** Size in bytes of the pushed manifest. */
  size: number;
}

export interface PushOptions {
  /** `<registry>/<repository>` (no tag). */
  repository: string;
  tag: string;
  /** The registry host, for messages. */
  registry: string;
  /** The X-Registry-Auth header value (base64url JSON; `{}` for anonymous). */
  registryAuth: string;
  image: string;
  onEvent?: EventListener;
  signal?: AbortSignal;
  redact: (text: string) => string;
  /**
   * Longest time without a word from the daemon (a progress line, the answer) before the push is
   * given up as hung — a registry that never answers would otherwise block it until the caller
   * aborts. Resolved by the builder (`pushIdleTimeoutMs`).
   */
  idleTimeoutMs: number;
  /**
   * The engine's lease check (BuildImageOptions.beforePush), awaited before every attempt: when it
   * rejects (LeaseLostError — another host took the build over) nothing is pushed.
   */
  beforePush?: () => Promise<void>;
}

export const DEFAULT_PUSH_IDLE_TIMEOUT_MS = 120_000;

/** The idle timeout in force: the option, else KILN_DOCKER_PUSH_IDLE_TIMEOUT_MS (a positive integer), else the default. */
export function pushIdleTimeoutMs(option: number | undefined, env: NodeJS.ProcessEnv = process.env): number {
  if (option !== undefined && Number.isFinite(option) && option > 0) return option;
  const fromEnv = Number(env.KILN_DOCKER_PUSH_IDLE_TIMEOUT_MS);
  return Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : DEFAULT_PUSH_IDLE_TIMEOUT_MS;
}

/**
 * A registry refusing the credentials (or their absence). Word-bounded status codes (a digest or a
 * size may contain "401"), and only the registry's own "access ... denied" wording: a bare "denied"
 * would also match a local "permission denied".
 */
export const AUTH_FAILURE =
  /unauthori[sz]ed|authentication required|no basic auth credentials|requested access to the resource is denied|\b(401|403)\b|forbidden/i;

/** A refusal the daemon does not retry itself but a later attempt can get past (a 429, a 5xx burst). */
const TRANSIENT =
  /toomanyrequests|too many requests|\b429\b|\b50[0234]\b|service unavailable|bad gateway|internal server error|connection reset|unexpected EOF|broken pipe/i;
/** Pause before each extra attempt (the daemon skips layers already uploaded, so a retry is cheap). */
const RETRY_DELAYS_MS = [1_000, 3_000];

/** Pushes, retrying a transient registry refusal a bounded number of times. */
export async function pushTag(daemon: DockerDaemon, options: PushOptions, delaysMs: readonly number[] = RETRY_DELAYS_MS): Promise<PushResult> {
  for (let attempt = 0; ; attempt++) {
    try {
      await options.beforePush?.();
      return await pushOnce(daemon, options);
    } catch (error) {
      const transient = (PushFailedError.isInstance(error) || RateLimitError.isInstance(error)) && TRANSIENT.test(error.message);
      if (!transient || attempt >= delaysMs.length || options.signal?.aborted) throw error;
      emit(options.onEvent, {
        type: "push.progress",
        image: options.image,
        layer: "retry",
        status: `Retrying the push (attempt ${attempt + 2}): ${error.message}`,
      });
      // Aborting during the pause rejects at once (with the signal's reason); the builder maps it.
      await sleep(delaysMs[attempt]!, undefined, { signal: options.signal });
    }
  }
}

async function pushOnce(daemon: DockerDaemon, options: PushOptions): Promise<PushResult> {
  // The request is aborted by the caller's signal or by the idle watchdog, whichever comes first.
  const idleMs = options.idleTimeoutMs;
  const controller = new AbortController();
  let idle = false;
  let watchdog: NodeJS.Timeout | undefined;
  const rearm = () => {
    clearTimeout(watchdog);
    watchdog = setTimeout(() => {
      idle = true;
      controller.abort(new Error(`no progress for ${idleMs} ms`));
    }, idleMs);
  };
  const forward = () => controller.abort(options.signal?.reason);
  if (options.signal?.aborted) forward();
  options.signal?.addEventListener("abort", forward, { once: true });
  const settle = (error: unknown): unknown =>
    idle && !options.signal?.aborted ? idleFailure(idleMs, options) : failure(daemon.translate(error, options.signal), options);
  rearm();
  try {
    let response;
    try {
      response = await daemon.dial({
        method: "POST",
        path: `/images/${encodeURIComponent(options.repository)}/push`,
        query: { tag: options.tag },
        headers: { "X-Registry-Auth": options.registryAuth },
        signal: controller.signal,
      });
    } catch (error) {
      throw settle(error);
    }
    const onIdle = () => response.destroy(new Error(`no progress for ${idleMs} ms`));
    controller.signal.addEventListener("abort", onIdle, { once: true });
    try {
      return await readPush(response, options, rearm);
    } catch (error) {
      throw KilnError.isInstance(error) && !idle ? error : settle(error);
    } finally {
      controller.signal.removeEventListener("abort", onIdle);
      if (!response.destroyed) response.destroy();
    }
  } finally {
    clearTimeout(watchdog);
    options.signal?.removeEventListener("abort", forward);
  }
}

/** Reads the push stream to its end; `alive` is called on every message (the idle watchdog). */
async function readPush(response: AsyncIterable<Buffer | string>, options: PushOptions, alive: () => void): Promise<PushResult> {
  let result: PushResult | undefined;
  let errorText: string | undefined;
  for await (const message of readJsonMessages(response)) {
    alive();
    if (message.errorDetail || message.error) {
      errorText = message.errorDetail?.message || message.error;
      continue;
    }
    const aux = message.aux as { Digest?: string; Size?: number; Tag?: string } | undefined;
    if (aux && typeof aux === "object" && typeof aux.Digest === "string") {
      result = { digest: aux.Digest, size: Number(aux.Size ?? 0) };
      continue;
    }
    if (message.id && message.status) {
      emit(options.onEvent, {
        type: "push.progress",
        image: options.image,
        layer: message.id,
        status: message.status,
        ...(message.progressDetail?.current !== undefined ? { current: message.progressDetail.current } : {}),
        ...(message.progressDetail?.total !== undefined ? { total: message.progressDetail.total } : {}),
      });
    }
  }
  if (errorText !== undefined) throw failure(new Error(errorText), options);
  if (!result) throw failure(new Error("the daemon ended the push without reporting a digest"), options);
  return result;
}

/** The registry (through the daemon) went silent: a hung push, given up rather than waited on forever. */
function idleFailure(idleMs: number, options: PushOptions): PushFailedError {
  return new PushFailedError(`Push of ${options.repository}:${options.tag} to ${options.registry} made no progress for ${idleMs / 1000} s and was given up`, {
    hint: `${options.registry} (or a proxy in front of it) stopped answering the Docker daemon. Check the registry's health and run the build again; for very slow links raise KILN_DOCKER_PUSH_IDLE_TIMEOUT_MS (now ${idleMs}).`,
    details: { registry: options.registry, repository: options.repository, idleTimeoutMs: idleMs },
  });
}

function failure(error: unknown, options: PushOptions): unknown {
  if ((error as { code?: string })?.code?.startsWith?.("KILN_")) return error;
  const text = options.redact(String((error as Error)?.message ?? error));
  if (AUTH_FAILURE.test(text)) {
    return new AuthError(`Push of ${options.repository}:${options.tag} was refused by ${options.registry}: ${text}`, {
      hint: `Log in to ${options.registry} (\`docker login ${options.registry}\`), or register a credential provider for it; check that the account may push to this repository.`,
      details: { registry: options.registry, repository: options.repository },
    });
  }
  if (/toomanyrequests|too many requests|\b429\b/i.test(text)) {
    return new RateLimitError(`Push of ${options.repository}:${options.tag} was rate-limited by ${options.registry}: ${text}`, {
      hint: `The registry asks to slow down; wait a few minutes and run the build again (layers already pushed are not uploaded twice), or push fewer images in parallel.`,
      details: { registry: options.registry, repository: options.repository },
    });
  }
  return new PushFailedError(`Push of ${options.repository}:${options.tag} to ${options.registry} failed: ${text}`, {
    hint: `Check that ${options.registry} is reachable from the Docker daemon (an http:// registry must be listed in the daemon's insecure-registries unless it is on localhost).`,
    details: { registry: options.registry, repository: options.repository },
  });
}
