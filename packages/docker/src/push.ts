/**
 * Pushes one local tag through the daemon (`POST /images/{name}/push`) and reads the whole stream:
 * `push.progress` per layer, the pushed digest from the final aux `{ Tag, Digest, Size }`, and any
 * error (reported inside the 200 response) as AuthError or PushFailedError — never with credentials.
 */
import { AuthError, emit, PushFailedError, type EventListener } from "@kiln/core";
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

export async function pushTag(daemon: DockerDaemon, options: PushOptions): Promise<PushResult> {
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
  return new PushFailedError(`Push of ${options.repository}:${options.tag} to ${options.registry} failed: ${text}`, {
    hint: `Check that ${options.registry} is reachable from the Docker daemon (an http:// registry must be listed in the daemon's insecure-registries unless it is on localhost).`,
    details: { registry: options.registry, repository: options.repository },
  });
}
