/**
 * When and how long to wait before asking a registry again. Transient answers (408, 429, 5xx) and
 * transport failures (reset, timeout, truncated body) are retried a bounded number of times with
 * full-jitter exponential backoff; a `Retry-After` header replaces the computed delay, but a wait
 * longer than `maxRetryAfterMs` is not slept through: the caller gets a RateLimitError at once.
 * No retry starts once the call has spent its request deadline, and an attempt that ran out of
 * deadline is not retried at all (see deadline.ts).
 */
export interface RetryOptions {
  /** Retries after the first attempt (default 3, so at most 4 requests). */
  retries?: number;
  /** First backoff step (default 250 ms). */
  baseDelayMs?: number;
  /** Largest computed backoff (default 4 s). */
  maxDelayMs?: number;
  /** Longest `Retry-After` honoured (default 30 s); a longer one fails fast with RateLimitError. */
  maxRetryAfterMs?: number;
}

export type ResolvedRetryOptions = Required<RetryOptions>;

export function resolveRetryOptions(options: RetryOptions = {}): ResolvedRetryOptions {
  return {
    retries: Math.max(0, options.retries ?? 3),
    baseDelayMs: Math.max(0, options.baseDelayMs ?? 250),
    maxDelayMs: Math.max(0, options.maxDelayMs ?? 4_000),
    maxRetryAfterMs: Math.max(0, options.maxRetryAfterMs ?? 30_000),
  };
}

export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || (status >= 500 && status <= 599 && status !== 501 && status !== 505);
}

/** Full jitter: a uniform delay in [0, min(max, base·2^attempt)], never below a small floor. */
export function backoffDelay(attempt: number, options: ResolvedRetryOptions, random: () => number = Math.random): number {
  const ceiling = Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** attempt);
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** `Retry-After` as milliseconds: delta-seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | string[] | undefined, now: number = Date.now()): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (!text) return undefined;
  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

export interface RateLimitInfo {
  limit?: number;
  remaining?: number;
  /** The window in seconds (Docker Hub's `;w=21600`). */
  windowSeconds?: number;
}

/** Reads `ratelimit-limit` / `ratelimit-remaining` (also `x-ratelimit-*`), including Docker Hub's `100;w=21600`. */
export function parseRateLimit(headers: Record<string, string | string[] | undefined>): RateLimitInfo | undefined {
  const read = (name: string) => {
    const raw = headers[name] ?? headers[`x-${name}`];
    const text = Array.isArray(raw) ? raw[0] : raw;
    if (!text) return undefined;
    const [count, ...params] = text.split(";");
    const value = Number(count!.trim());
    const windowParam = params.map((p) => p.trim()).find((p) => p.startsWith("w="));
    return {
      value: Number.isFinite(value) ? value : undefined,
      window: windowParam ? Number(windowParam.slice(2)) : undefined,
    };
  };
  const limit = read("ratelimit-limit");
  const remaining = read("ratelimit-remaining");
  if (!limit && !remaining) return undefined;
  const info: RateLimitInfo = {};
  if (limit?.value !== undefined) info.limit = limit.value;
  if (remaining?.value !== undefined) info.remaining = remaining.value;
  const window = limit?.window ?? remaining?.window;
  if (window !== undefined && Number.isFinite(window)) info.windowSeconds = window;
  return info;
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
