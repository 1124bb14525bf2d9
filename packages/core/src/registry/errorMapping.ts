/**
 * Registry answers and failures → Kiln's typed errors. Three-valued by construction: `absentOrThrow`
 * turns "the registry says it does not exist" into null and everything else into a typed error —
 * AuthError, RateLimitError, RegistryTimeoutError, CancelledError or RegistryError, each with a hint.
 * Every text is scrubbed of the secrets the client holds (credentials, tokens it was handed).
 */
import { AuthError, CancelledError, KilnError, RateLimitError, RegistryError, RegistryTimeoutError } from "../errors.js";
import { cancelledError } from "./abort.js";
import { redact } from "./credentials.js";
import { deadlineHint, type CallDeadline, type DeadlineSource } from "./deadline.js";
import { TransportError, type HttpResponse } from "./http.js";
import { describeRef, type RegistryReference } from "./refs.js";
import { parseRetryAfter } from "./retry.js";

/** One answer of the registry, and whether the request that got it went out without credentials. */
export interface SendResult {
  response: HttpResponse;
  /** True when the request went out without credentials. */
  anonymous: boolean;
}

type KilnErrorOptions = NonNullable<ConstructorParameters<typeof KilnError>[1]>;

export interface ErrorMapperOptions {
  /** Retries after the first attempt (named in hints and details). */
  retries: number;
  /** The total request deadline, and where it was set (named in timeout hints). */
  totalMs: number;
  deadlineSource: DeadlineSource;
  /** See RegistryClientOptions.anonymousDenialMeansAbsent. */
  anonymousDenialMeansAbsent?: (registry: string) => boolean;
}

export class ErrorMapper {
  /** Every secret this client has seen (credentials, tokens); no error text carries one. */
  readonly secrets = new Set<string>();

  constructor(private readonly options: ErrorMapperOptions) {}

  /** `text` without any secret this client knows. */
  scrub(text: string): string {
    return redact(text, [...this.secrets]);
  }

  /** Builds a typed error whose text holds no secret this client knows. */
  error<T extends KilnError>(Kind: new (message: string, options?: KilnErrorOptions) => T, message: string, options: KilnErrorOptions): T {
    return new Kind(this.scrub(message), { ...options, hint: options.hint && this.scrub(options.hint) });
  }

  /** Null for "the registry says it does not exist"; a typed error for everything else. */
  absentOrThrow(result: SendResult, ref: RegistryReference, what: string): null {
    const { response } = result;
    if (response.status === 404) return null;
    const codes = errorCodes(response);
    if (codes.includes("MANIFEST_UNKNOWN") || codes.includes("NAME_UNKNOWN") || codes.includes("BLOB_UNKNOWN")) return null;
    if ((response.status === 401 || response.status === 403) && result.anonymous && this.options.anonymousDenialMeansAbsent?.(ref.registry)) {
      return null;
    }
    throw this.failure(result, ref, what);
  }

  /** The typed error (auth, rate limit, registry) for an answer that is not a success. */
  failure(result: SendResult, ref: RegistryReference, what: string): KilnError {
    const { response } = result;
    const status = response.status;
    const detail = errorSummary(response);
    if (status === 401 || status === 403) {
      return this.error(
        AuthError,
        result.anonymous
          ? `${describeRef(ref)}: the registry ${ref.registry} requires credentials to read this ${what} (HTTP ${status})`
          : `${describeRef(ref)}: the registry ${ref.registry} denied access with the credentials Kiln found (HTTP ${status})`,
        {
          hint: result.anonymous
            ? `Run \`docker login ${ref.registry}\` (or configure a credential provider) so Kiln can read ${ref.repository}.`
            : `Check that your account can access ${ref.repository}, or run \`docker login ${ref.registry}\` again.`,
          details: { registry: ref.registry, repository: ref.repository, status, anonymous: result.anonymous },
        },
      );
    }
    if (status === 429) return this.rateLimited(ref, response, this.options.retries);
    return this.error(RegistryError, `${describeRef(ref)}: ${what} request failed with HTTP ${status}${detail ? ` (${detail})` : ""}`, {
      hint:
        status >= 500
          ? `The registry ${ref.registry} kept failing after ${this.options.retries + 1} attempts; try again later.`
          : `The registry ${ref.registry} refused the request; check the reference and your access.`,
      details: { registry: ref.registry, repository: ref.repository, status },
    });
  }

  rateLimited(ref: RegistryReference, response: HttpResponse, attempts: number): RateLimitError {
    const retryAfterMs = parseRetryAfter(response.headers["retry-after"]);
    const retryAfterSeconds = retryAfterMs === undefined ? undefined : Math.ceil(retryAfterMs / 1000);
    return this.error(
      RateLimitError,
      `${describeRef(ref)}: the registry ${ref.registry} is rate limiting requests (HTTP 429)${
        retryAfterSeconds === undefined ? "" : `; it asks to wait ${retryAfterSeconds} s`
      }`,
      {
        hint: isDockerHubName(ref.registry)
          ? "Log in with `docker login` (authenticated pulls have a higher limit) or wait and try again."
          : "Wait and try again, or reduce the number of parallel checks.",
        details: { registry: ref.registry, retryAfterSeconds, attempts: attempts + 1 },
      },
    );
  }

  /** A request that never got an answer, after `attempts` retries. `whom` names a party other than the registry. */
  transportFailure(error: unknown, ref: RegistryReference, url: URL, attempts: number, deadline: CallDeadline, whom = ""): KilnError {
    if (KilnError.isInstance(error)) return error;
    if (error instanceof TransportError && error.reason === "deadline") return this.timedOut(error, ref, url, attempts, deadline, whom);
    const reason = error instanceof TransportError ? error.message : String((error as Error)?.message ?? error);
    const target = whom ? `${ref.registry} (${whom})` : ref.registry;
    return this.error(RegistryError, `${describeRef(ref)}: could not reach ${target} at ${url.origin}: ${reason}, after ${attempts + 1} attempts`, {
      hint:
        error instanceof TransportError && error.reason === "connect"
          ? `Check that ${url.host} is reachable (network, proxy, DNS), and that the registry is running.`
          : "The connection failed repeatedly; try again, or raise the client's timeouts for a slow network.",
      details: { registry: ref.registry, url: url.origin, attempts: attempts + 1, reason: error instanceof TransportError ? error.reason : undefined },
    });
  }

  /**
   * The call ran out of time: an attempt passed its deadline, or the deadline leaves no room for
   * another attempt after a stall. "Could not tell" — a RegistryTimeoutError naming the setting.
   */
  timedOut(error: TransportError, ref: RegistryReference, url: URL, attempts: number, deadline: CallDeadline, whom = ""): RegistryTimeoutError {
    const target = whom ? `${ref.registry} (${whom})` : ref.registry;
    const totalMs = this.options.totalMs;
    const seconds = formatSeconds(totalMs);
    const message =
      error.reason === "deadline"
        ? `${describeRef(ref)}: ${target} at ${url.origin} did not finish answering within the ${seconds} request deadline`
        : `${describeRef(ref)}: no answer from ${target} at ${url.origin} within the ${seconds} request deadline (${attempts + 1} attempts; last: ${error.message})`;
    return this.error(RegistryTimeoutError, message, {
      hint: deadlineHint(ref.registry, totalMs, this.options.deadlineSource),
      details: {
        registry: ref.registry,
        ...(ref.repository ? { repository: ref.repository } : {}),
        url: url.origin,
        timeoutMs: totalMs,
        elapsedMs: deadline.elapsedMs(),
        attempts: attempts + 1,
        reason: error.reason,
      },
    });
  }

  /** The CancelledError of an aborted exchange (its text scrubbed like every other error's). */
  cancelled(ref: RegistryReference, signal: AbortSignal | undefined): CancelledError {
    const what = ref.repository ? describeRef(ref) : ref.registry;
    const error = cancelledError(`${what}: registry request`, signal, { registry: ref.registry, ...(ref.repository ? { repository: ref.repository } : {}) });
    return this.error(CancelledError, error.message, { hint: error.hint, cause: signal?.reason, details: error.details });
  }
}

function errorCodes(response: HttpResponse): string[] {
  try {
    const parsed = JSON.parse(response.body.toString("utf8")) as { errors?: Array<{ code?: string }> };
    return (parsed.errors ?? []).map((e) => String(e.code ?? "").toUpperCase());
  } catch {
    return [];
  }
}

function errorSummary(response: HttpResponse): string {
  try {
    const parsed = JSON.parse(response.body.toString("utf8")) as { errors?: Array<{ code?: string; message?: string }> };
    return (parsed.errors ?? [])
      .map((e) => [e.code, e.message].filter(Boolean).join(": "))
      .join("; ")
      .slice(0, 200);
  } catch {
    return "";
  }
}

function isDockerHubName(registry: string): boolean {
  return ["docker.io", "index.docker.io", "registry-1.docker.io"].includes(registry.toLowerCase());
}

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}
