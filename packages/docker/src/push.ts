/**
 * Pushes one local tag through the daemon (`POST /images/{name}/push`) and reads the whole stream:
 * `push.progress` per layer, the pushed digest from the final aux `{ Tag, Digest, Size }`, and any
 * error (reported inside the 200 response) as AuthError or PushFailedError — never with credentials.
 */
import { AuthError, emit, PushFailedError, RateLimitError, type EventListener } from "@kiln/core";
import type { DockerDaemon } from "./daemon.js";
import { readJsonMessages } from "./jsonStream.js";

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
}

const AUTH_FAILURE = /unauthori[sz]ed|authentication required|no basic auth credentials|denied|forbidden|401|403/i;

/** A refusal the daemon does not retry itself but a later attempt can get past (a 429, a 5xx burst). */
const TRANSIENT = /toomanyrequests|too many requests|\b429\b|\b50[0234]\b|service unavailable|bad gateway|internal server error|connection reset|unexpected EOF|broken pipe/i;
/** Pause before each extra attempt (the daemon skips layers already uploaded, so a retry is cheap). */
const RETRY_DELAYS_MS = [1_000, 3_000];

/** Pushes, retrying a transient registry refusal a bounded number of times. */
export async function pushTag(daemon: DockerDaemon, options: PushOptions, delaysMs: readonly number[] = RETRY_DELAYS_MS): Promise<PushResult> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await pushOnce(daemon, options);
    } catch (error) {
      const transient = (PushFailedError.isInstance(error) || RateLimitError.isInstance(error)) && TRANSIENT.test(error.message);
      if (!transient || attempt >= delaysMs.length || options.signal?.aborted) throw error;
      emit(options.onEvent, { type: "push.progress", image: options.image, layer: "retry", status: `Retrying the push (attempt ${attempt + 2}): ${error.message}` });
      await new Promise((resolve) => setTimeout(resolve, delaysMs[attempt]));
    }
  }
}

async function pushOnce(daemon: DockerDaemon, options: PushOptions): Promise<PushResult> {
  let response;
  try {
    response = await daemon.dial({
      method: "POST",
      path: `/images/${encodeURIComponent(options.repository)}/push`,
      query: { tag: options.tag },
      headers: { "X-Registry-Auth": options.registryAuth },
      signal: options.signal,
    });
  } catch (error) {
    throw failure(daemon.translate(error, options.signal), options);
  }
  let result: PushResult | undefined;
  let errorText: string | undefined;
  try {
    for await (const message of readJsonMessages(response)) {
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
  } catch (error) {
    throw failure(daemon.translate(error, options.signal), options);
  }
  if (errorText !== undefined) throw failure(new Error(errorText), options);
  if (!result) throw failure(new Error("the daemon ended the push without reporting a digest"), options);
  return result;
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
