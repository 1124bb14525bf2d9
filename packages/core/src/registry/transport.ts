/**
 * The one retry loop of the registry client (go-containerregistry's retry transport): every
 * request — to a registry, a redirect target or a token service — goes through `RetryTransport.run`.
 *
 * Per attempt: the caller's `prepare` builds the request as it must go out now (auth headers can
 * change between attempts), `httpRequest` sends it with the client's timeouts, and then:
 * - a transport failure that may pass (reset, stall, truncation) is retried after a jittered back-off;
 *   one past the request deadline is not (see deadline.ts);
 * - a transient status (408, 429, 5xx) is retried after its `Retry-After` or a back-off — unless the
 *   registry asks for a longer wait than `maxRetryAfterMs`, or the call's deadline would pass first:
 *   then the answer stands and the caller's `judge` turns it into a typed error;
 * - anything else goes to `judge`: a result, "again" (an auth challenge answered, a redirect — sent
 *   at once, not counted as a retry), or a damaged answer (retried like a reset, then `giveUp`).
 * Every wait is reported (`registry.retry`, and `registry.ratelimit` for a 429 — see
 * registryEvents.ts) and ends at once when the call's signal aborts; no attempt follows an abort.
 */
import type { KilnError } from "../errors.js";
import type { EventListener } from "../events.js";
import { CallDeadline } from "./deadline.js";
import type { ErrorMapper } from "./errorMapping.js";
import { httpRequest, TransportError, type HttpRequest, type HttpResponse } from "./http.js";
import type { RegistryReference } from "./refs.js";
import { reportRateLimit, reportRetry, type EventSinks } from "./registryEvents.js";
import { backoffDelay, isRetryableStatus, parseRetryAfter, sleep, type ResolvedRetryOptions } from "./retry.js";

export interface RegistryTimeouts {
  /** TCP/TLS connect (default 5 s). */
  connectMs?: number;
  /** Longest silence while waiting for or reading an answer (default 15 s). */
  idleMs?: number;
  /**
   * Total deadline of each request — connect, headers and the whole body (default 30 s, or
   * KILN_REGISTRY_TIMEOUT_MS; this option wins). A request past it is abandoned and not retried:
   * the call fails with a RegistryTimeoutError. A retry after another failure gets its own full
   * deadline, but none starts once the call has run this long.
   */
  totalMs?: number;
}

/** One request as an attempt sends it (the transport adds timeouts and the signal). */
export type OutgoingRequest = Pick<HttpRequest, "method" | "url" | "headers" | "body" | "maxBodyBytes">;

/** What `judge` makes of an answer the transport did not retry on its own. */
export type Verdict<T> =
  | { done: T }
  /** Send again at once (not a retry: an auth challenge was answered, or a redirect followed). */
  | { again: true }
  /** A 2xx answer that is unusable (digest mismatch, not JSON): retried, then `giveUp(retries)`. */
  | { damaged: string; giveUp: (retries: number) => KilnError };

export interface RetryCall<T> {
  /** What the call is about (errors and events name it). */
  ref: RegistryReference;
  /** Another party than the registry itself, for errors ("its token service"). */
  whom?: string;
  /** Put before retry reasons ("token service: "). */
  reasonPrefix?: string;
  signal?: AbortSignal;
  /** The caller's own listener, besides the client's. */
  onEvent?: EventListener;
  prepare(): Promise<OutgoingRequest>;
  judge(response: HttpResponse, url: URL, retries: number): Verdict<T> | Promise<Verdict<T>>;
}

export class RetryTransport {
  constructor(
    private readonly retry: ResolvedRetryOptions,
    private readonly timeouts: Readonly<Required<RegistryTimeouts>>,
    private readonly errors: ErrorMapper,
    private readonly onEvent: EventListener | undefined,
  ) {}

  async run<T>(call: RetryCall<T>): Promise<T> {
    const { ref, signal, whom = "", reasonPrefix = "" } = call;
    const sinks: EventSinks = [this.onEvent, call.onEvent];
    const scrub = (text: string) => this.errors.scrub(text);
    const deadline = new CallDeadline(this.timeouts.totalMs);
    let retries = 0;
    const pause = async (url: URL, delayMs: number, reason: string, status?: number) => {
      if (signal?.aborted) throw this.errors.cancelled(ref, signal);
      retries++;
      reportRetry(
        sinks,
        { ref, url, attempt: retries, waitMs: delayMs, reason: `${reasonPrefix}${reason}`, ...(status !== undefined ? { status } : {}) },
        scrub,
      );
      // A back-off (or a registry's Retry-After) ends at once on abort, and no attempt follows it.
      try {
        await sleep(delayMs, signal);
      } catch (error) {
        if (signal?.aborted) throw this.errors.cancelled(ref, signal);
        throw error;
      }
    };
    for (;;) {
      // Checked before every attempt: an aborted call never sends another request.
      if (signal?.aborted) throw this.errors.cancelled(ref, signal);
      const request = await call.prepare();
      const { url } = request;
      let response: HttpResponse;
      try {
        // The caller's signal goes to the exchange as is; the per-attempt timeouts are httpRequest's
        // own timers, so neither cancels the other's bookkeeping.
        response = await httpRequest({
          ...request,
          connectTimeoutMs: this.timeouts.connectMs,
          idleTimeoutMs: this.timeouts.idleMs,
          totalTimeoutMs: this.timeouts.totalMs,
          signal,
        });
      } catch (error) {
        if (signal?.aborted) throw this.errors.cancelled(ref, signal);
        if (error instanceof TransportError && error.retryable && retries < this.retry.retries) {
          const delay = backoffDelay(retries, this.retry);
          if (deadline.allowsAttemptAfter(delay)) {
            await pause(url, delay, error.reason);
            continue;
          }
          // Out of time after a stall: a timeout. Other failures (refused, reset) keep their own error.
          if (error.reason === "timeout") throw this.errors.timedOut(error, ref, url, retries, deadline, whom);
        }
        throw this.errors.transportFailure(error, ref, url, retries, deadline, whom);
      }
      const wait = this.statusRetryDelay(response, retries, deadline);
      reportRateLimit(sinks, ref, url, response, wait === undefined ? undefined : { attempt: retries + 1, waitMs: wait }, scrub);
      if (wait !== undefined) {
        await pause(url, wait, `HTTP ${response.status}`, response.status);
        continue;
      }
      const verdict = await call.judge(response, url, retries);
      if ("done" in verdict) return verdict.done;
      if ("again" in verdict) continue;
      const delay = backoffDelay(retries, this.retry);
      if (retries < this.retry.retries && deadline.allowsAttemptAfter(delay)) {
        await pause(url, delay, verdict.damaged);
        continue;
      }
      throw verdict.giveUp(retries);
    }
  }

  /**
   * The wait before retrying a transient status, or undefined when the answer stands: not a
   * transient status, the retries are spent, the registry asks to wait longer than we would (sleeping
   * that long inside a check helps nobody: the caller learns when to come back), or no attempt could
   * start before the call's deadline (a 429 then stays a RateLimitError).
   */
  private statusRetryDelay(response: HttpResponse, retries: number, deadline: CallDeadline): number | undefined {
    if (!isRetryableStatus(response.status) || retries >= this.retry.retries) return undefined;
    const retryAfter = parseRetryAfter(response.headers["retry-after"]);
    if (retryAfter !== undefined && retryAfter > this.retry.maxRetryAfterMs) return undefined;
    const delay = retryAfter ?? backoffDelay(retries, this.retry);
    return deadline.allowsAttemptAfter(delay) ? delay : undefined;
  }
}
