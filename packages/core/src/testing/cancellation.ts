/** What the suites accept as "cancelled", and how they time it. */
import { CancelledError } from "../errors.js";

/**
 * An abort error: a Kiln CancelledError, the signal's own reason (what `signal.throwIfAborted()`
 * throws), or a DOMException/Error named AbortError (what `fetch`, `fs` and SDKs throw).
 */
export function isAbortError(error: unknown, signal: AbortSignal): boolean {
  if (CancelledError.isInstance(error)) return true;
  if (error !== undefined && error === signal.reason) return true;
  return (error as { name?: unknown } | null)?.name === "AbortError";
}

/** How `promise` settled and how long after `since()` it did — a resolution is reported, not thrown. */
export async function settle<T>(promise: Promise<T>, since: () => number): Promise<{ value?: T; error?: unknown; rejected: boolean; afterMs: number }> {
  try {
    const value = await promise;
    return { value, rejected: false, afterMs: Date.now() - since() };
  } catch (error) {
    return { error, rejected: true, afterMs: Date.now() - since() };
  }
}

/** `promise`, or a rejection after `ms` saying what did not happen — so no wait is unbounded. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not settled within ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
