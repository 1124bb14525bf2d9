/**
 * In-process build sharing: concurrent requests with the same key run the work once.
 *
 * Every caller's `onEvent` receives the shared work's events. Callers without a signal get the very
 * same promise; a caller with a signal gets its own promise that rejects when *its* signal aborts,
 * and the shared work is only aborted once every caller has gone.
 */
import { CancelledError } from "./errors.js";
import type { BuildEvent, EventListener } from "./events.js";

interface Entry<T> {
  promise: Promise<T>;
  listeners: Set<EventListener>;
  controller: AbortController;
  callers: number;
}

export interface ShareOptions {
  signal?: AbortSignal;
  onEvent?: EventListener;
}

export class SharedWork<T> {
  private readonly inFlight = new Map<string, Entry<T>>();

  /** Number of distinct works running (for tests and diagnostics). */
  get size(): number {
    return this.inFlight.size;
  }

  run(key: string, work: (signal: AbortSignal, emit: EventListener) => Promise<T>, options: ShareOptions = {}): Promise<T> {
    if (options.signal?.aborted) {
      return Promise.reject(new CancelledError("Build cancelled", { cause: options.signal.reason }));
    }
    let entry = this.inFlight.get(key);
    if (!entry) {
      const listeners = new Set<EventListener>();
      const controller = new AbortController();
      const fanOut: EventListener = (event: BuildEvent) => {
        for (const listener of listeners) {
          try { listener(event); } catch { /* an observer never breaks the build */ }
        }
      };
      const created: Entry<T> = { promise: undefined as unknown as Promise<T>, listeners, controller, callers: 0 };
      created.promise = (async () => {
        try {
          return await work(controller.signal, fanOut);
        } finally {
          if (this.inFlight.get(key) === created) this.inFlight.delete(key);
        }
      })();
      // Callers get the outcome through their own handlers; when the last one left and the work was
      // aborted, nobody awaits it any more, and that rejection must not surface as unhandled.
      created.promise.catch(() => {});
      entry = created;
      this.inFlight.set(key, created);
    }
    const shared = entry;
    if (options.onEvent) shared.listeners.add(options.onEvent);
    shared.callers++;
    const leave = () => {
      if (options.onEvent) shared.listeners.delete(options.onEvent);
      shared.callers--;
    };
    const signal = options.signal;
    if (!signal) {
      shared.promise.then(leave, leave);
      return shared.promise;
    }
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => {
        leave();
        if (shared.callers === 0) {
          // Cancelled work must not be joined by a caller that arrives while it winds down.
          if (this.inFlight.get(key) === shared) this.inFlight.delete(key);
          shared.controller.abort(signal.reason);
        }
        reject(new CancelledError("Build cancelled", { cause: signal.reason }));
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      shared.promise.then(
        (value) => { signal.removeEventListener("abort", onAbort); leave(); resolve(value); },
        (error) => { signal.removeEventListener("abort", onAbort); leave(); reject(error); },
      );
    });
  }
}
