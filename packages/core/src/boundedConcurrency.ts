/**
 * Bounded concurrency for work that shares one AbortSignal (a run's, the CLI's Ctrl-C signal):
 *
 * - `Slots`: a counting semaphore. A caller takes a slot when it is ready to run (buildAll takes one
 *   only once an image's base is done, so a waiting image holds none and the graph cannot deadlock).
 * - `mapBounded`: `fn` over a list, at most `limit` at a time, results in the list's order; the
 *   first failure starts no further item, lets those under way finish, then is thrown.
 * - `SignalScope`: per-operation signals hanging off one shared signal.
 *
 * Why: every `addEventListener("abort")` on a signal that never fires stays until removed, and Node
 * warns (MaxListenersExceededWarning) past 10 on one signal. So a shared signal here carries ONE
 * listener however many operations wait or run on it (abortFanOut.ts), and each running item gets a
 * signal of its own from a `SignalScope` (dropped when the item ends): the listeners its work adds
 * (requests, retry back-offs, lock waits, dedupe) are on its own signal, never on the shared one.
 */

import { whenAborted } from "./abortFanOut.js";

/** Gives back a slot; calling it again does nothing. */
export type ReleaseSlot = () => void;

/** A counting semaphore whose waiters leave (rejecting with the signal's reason) when their signal aborts. */
export class Slots {
  private free: number;
  /** Waiting callers, first come first served: each is granted a slot by a release. */
  private readonly queue: Array<() => void> = [];

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`Slots: size must be a whole number of at least 1, got ${size}`);
    this.free = size;
  }

  /** Slots taken right now (for tests and progress). */
  get inUse(): number {
    return this.size - this.free;
  }

  /** Resolves with a release function once a slot is free; rejects with `signal.reason` if it aborts first. */
  acquire(signal?: AbortSignal): Promise<ReleaseSlot> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.free > 0) {
      this.free--;
      return Promise.resolve(this.releaser());
    }
    return new Promise<ReleaseSlot>((resolve, reject) => {
      // One listener on the signal however many wait under it (abortFanOut.ts), gone once granted.
      const stopWatching = signal
        ? whenAborted(signal, () => {
            const at = this.queue.indexOf(grant);
            if (at >= 0) this.queue.splice(at, 1);
            reject(signal.reason);
          })
        : () => {};
      const grant = () => {
        stopWatching();
        resolve(this.releaser());
      };
      this.queue.push(grant);
    });
  }

  private releaser(): ReleaseSlot {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.queue.shift();
      // Handed straight to the next waiter: the slot never looks free in between.
      if (next) next();
      else this.free++;
    };
  }
}

/**
 * Signals for the operations under one shared signal: `open()` gives an operation a signal of its
 * own, aborted (with the same reason) when the shared one is; `close()` it when the operation ends.
 * The shared signal carries one listener while any operation is open, none otherwise.
 */
export class SignalScope {
  constructor(private readonly parent?: AbortSignal) {}

  /** A signal for one operation, and the function that ends it (call it in a `finally`). */
  open(): { signal: AbortSignal; close: () => void } {
    const controller = new AbortController();
    const parent = this.parent;
    const close = parent ? whenAborted(parent, () => controller.abort(parent.reason)) : () => {};
    return { signal: controller.signal, close };
  }

  /** Runs `work` with a signal of its own, closed when it settles. */
  async run<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const { signal, close } = this.open();
    try {
      return await work(signal);
    } finally {
      close();
    }
  }
}

export interface MapBoundedOptions {
  /** Starts no further item once aborted (the call then rejects with its reason); each item's signal aborts with it. */
  signal?: AbortSignal;
}

/**
 * `fn` over `items`, at most `limit` at a time; the results in the items' order. `fn` gets the item,
 * its index and a signal of its own (see SignalScope), to pass to the work it does. The first failure
 * (or abort) starts no further item; the items under way are awaited, then the first failure is thrown.
 */
export async function mapBounded<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number, signal: AbortSignal) => Promise<R>,
  options: MapBoundedOptions = {},
): Promise<R[]> {
  if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`mapBounded: limit must be a whole number of at least 1, got ${limit}`);
  const { signal } = options;
  signal?.throwIfAborted();
  const scope = new SignalScope(signal);
  const results: R[] = new Array(items.length);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (failure === undefined && next < items.length) {
      if (signal?.aborted) {
        failure ??= { error: signal.reason };
        return;
      }
      const index = next++;
      try {
        results[index] = await scope.run((own) => fn(items[index]!, index, own));
      } catch (error) {
        failure ??= { error };
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure !== undefined) throw failure.error;
  return results;
}
