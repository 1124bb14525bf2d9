/**
 * Cancellation helpers for registry requests and checks. A cancelled check is a CancelledError —
 * never "absent" (that would trigger a build) and never "present".
 */
import { CancelledError } from "../errors.js";
import type { EventListener } from "../events.js";

/** Per-call options of the registry client's requests. */
export interface RegistryRequestOptions {
  /**
   * Cancels the request: the in-flight HTTP exchange is destroyed (its socket closed), a retry
   * back-off or `Retry-After` wait ends at once, no further attempt is made, and the call rejects
   * with a CancelledError. It composes with the client's own deadline (`timeouts.totalMs`,
   * KILN_REGISTRY_TIMEOUT_MS): whichever comes first ends the request — the caller's abort as a
   * CancelledError, the deadline as a RegistryTimeoutError; neither is ever "absent".
   */
  signal?: AbortSignal;
  /**
   * Hears this request's waits: a `registry.retry` event before each retry and `registry.ratelimit`
   * for a 429 or rate-limit headers (with the wait, the host and the URL without credentials or
   * query string) — so a caller sharing a client (e.g. the default one) can show them. The
   * client's own `onEvent` hears them as well.
   */
  onEvent?: EventListener;
}

/** The typed error for a registry operation given up because its signal was aborted. */
export function cancelledError(what: string, signal: AbortSignal | undefined, details?: Record<string, unknown>): CancelledError {
  return new CancelledError(`${what}: cancelled`, {
    cause: signal?.reason,
    hint: "The operation was cancelled (AbortSignal, Ctrl-C or SIGTERM); nothing was concluded about the image.",
    ...(details ? { details } : {}),
  });
}

/**
 * Settles like `promise`, or rejects with `onAbort()` as soon as `signal` is aborted — for work that
 * cannot itself be cancelled (a third-party checker ignoring its signal, a credential helper).
 * The abandoned promise's own rejection is swallowed so it never surfaces as unhandled.
 */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined, onAbort: () => unknown): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) {
    promise.catch(() => undefined);
    return Promise.reject(onAbort());
  }
  return new Promise<T>((resolve, reject) => {
    const abandon = () => {
      promise.catch(() => undefined);
      reject(onAbort());
    };
    signal.addEventListener("abort", abandon, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", abandon);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", abandon);
        reject(error);
      },
    );
  });
}
