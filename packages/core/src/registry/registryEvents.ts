/**
 * The events the registry transport reports while it waits: `registry.retry` before every retry and
 * `registry.ratelimit` for a 429 or rate-limit headers. They go to the client's listener and to the
 * request's own (a shared client serves many callers: each hears about its own requests). URLs are
 * reduced to origin and path — no credentials, no query string (an upload's `_state`, a token
 * service's `scope`/`account`) — and free text is scrubbed of the client's secrets.
 */
import { emit, type EventListener } from "../events.js";
import { redactUrl } from "../redact.js";
import type { HttpResponse } from "./http.js";
import { describeRef, type RegistryReference } from "./refs.js";
import { parseRateLimit, parseRetryAfter } from "./retry.js";

/** Who hears a request's events: the client's listener and the request's own. */
export type EventSinks = ReadonlyArray<EventListener | undefined>;

export interface RetryNotice {
  ref: RegistryReference;
  url: URL;
  /** The retry about to be made (1 for the first). */
  attempt: number;
  waitMs: number;
  /** The HTTP status that caused it; absent for a transport failure or a damaged answer. */
  status?: number;
  reason: string;
}

/** origin + path of a request URL: what events may show of it. */
export function eventUrl(url: URL, scrub: (text: string) => string): string {
  return scrub(redactUrl(`${url.origin}${url.pathname}`));
}

/** The fields naming what a registry event is about: the reference, its registry, the host and URL asked. */
function where(ref: RegistryReference, url: URL, scrub: (text: string) => string) {
  return { image: describeRef(ref), registry: ref.registry, host: url.host, url: eventUrl(url, scrub) };
}

export function reportRetry(sinks: EventSinks, notice: RetryNotice, scrub: (text: string) => string): void {
  const event = {
    type: "registry.retry" as const,
    ...where(notice.ref, notice.url, scrub),
    attempt: notice.attempt,
    waitMs: notice.waitMs,
    delayMs: notice.waitMs,
    ...(notice.status !== undefined ? { status: notice.status } : {}),
    reason: scrub(notice.reason),
  };
  for (const sink of sinks) emit(sink, event);
}

/**
 * A 429, or an answer with rate-limit headers; `retry` when the client is about to wait for another
 * attempt. Other answers report nothing.
 */
export function reportRateLimit(
  sinks: EventSinks,
  ref: RegistryReference,
  url: URL,
  response: HttpResponse,
  retry: { attempt: number; waitMs: number } | undefined,
  scrub: (text: string) => string,
): void {
  const info = parseRateLimit(response.headers);
  const fields: { limit?: number; remaining?: number; retryAfterSeconds?: number } = {};
  if (info?.limit !== undefined) fields.limit = info.limit;
  if (info?.remaining !== undefined) fields.remaining = info.remaining;
  if (response.status === 429) {
    const retryAfterMs = parseRetryAfter(response.headers["retry-after"]);
    if (retryAfterMs !== undefined) fields.retryAfterSeconds = Math.ceil(retryAfterMs / 1000);
  } else if (Object.keys(fields).length === 0) return;
  const event = {
    type: "registry.ratelimit" as const,
    ...where(ref, url, scrub),
    status: response.status,
    ...fields,
    ...(retry && response.status === 429 ? retry : {}),
  };
  for (const sink of sinks) emit(sink, event);
}
