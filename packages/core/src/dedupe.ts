/**
 * In-flight sharing: concurrent requests with the same key run the work once (go's singleflight).
 * One helper for every place that shares work in progress — the engine's builds (`SharedWork`), the
 * registry client's token fetches, @kiln/ecr's token refreshes.
 *
 * Every caller's `onEvent` receives the shared work's events. Callers without a signal get the very
 * same promise; a caller with a signal gets its own promise that rejects when *its* signal aborts,
 * and the shared work is only aborted once every caller has gone (then it is forgotten at once, so
 * a caller arriving while it winds down starts fresh work instead of joining the cancelled one). An
 * already-aborted caller starts and joins nothing.
 */
import { whenAborted } from "./abortFanOut.js";
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

export interface InFlightOptions extends ShareOptions {
  /** The error a caller whose signal aborts is rejected with (default: the signal's reason). */
  cancelled?: (signal: AbortSignal) => unknown;
}

/** Work in progress by key, shared by concurrent callers. */
export class InFlight<T> {
  private readonly inFlight = new Map<string, Entry<T>>();

  /** Number of distinct works running (for tests and diagnostics). */
  get size(): number {
    return this.inFlight.size;
  }

  /** Whether work for `key` is running. */
  has(key: string): boolean {
    return this.inFlight.has(key);
  }

  /** Joins the work running for `key`, or starts `work` (with a signal of its own and an event fan-out). */
  run(key: string, work: (signal: AbortSignal, emit: EventListener) => Promise<T>, options: InFlightOptions = {}): Promise<T> {
    const { signal, onEvent } = options;
    const cancelled = (aborted: AbortSignal) => (options.cancelled ? options.cancelled(aborted) : aborted.reason);
    if (signal?.aborted) return Promise.reject(cancelled(signal));
    const shared = this.inFlight.get(key) ?? this.start(key, work);
    if (onEvent) shared.listeners.add(onEvent);
    shared.callers++;
    let joined = true;
    // Synchronous and once only, so callers aborted by one signal in the same tick all count as gone.
    const leave = () => {
      if (!joined) return;
      joined = false;
      if (onEvent) shared.listeners.delete(onEvent);
      shared.callers--;
    };
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
        reject(cancelled(signal));
      };
      // One listener on a signal however many calls share it (e.g. 20 concurrent build()s), gone as each call ends.
      const stopListening = whenAborted(signal, onAbort);
      shared.promise.then(
        (value) => {
          stopListening();
          leave();
          resolve(value);
        },
        (error) => {
          stopListening();
          leave();
          reject(error);
        },
      );
    });
  }

  private start(key: string, work: (signal: AbortSignal, emit: EventListener) => Promise<T>): Entry<T> {
    const listeners = new Set<EventListener>();
    const controller = new AbortController();
    const fanOut: EventListener = (event: BuildEvent) => {
      for (const listener of listeners) {
        try {
          listener(event);
        } catch {
          /* an observer never breaks the work */
        }
      }
    };
    const created: Entry<T> = { promise: undefined as unknown as Promise<T>, listeners, controller, callers: 0 };
    let finished = false;
    created.promise = (async () => {
      try {
        return await work(controller.signal, fanOut);
      } finally {
        finished = true;
        if (this.inFlight.get(key) === created) this.inFlight.delete(key);
      }
    })();
    // Callers get the outcome through their own handlers; when the last one left and the work was
    // aborted, nobody awaits it any more, and that rejection must not surface as unhandled.
    created.promise.catch(() => {});
    // Set after the work started (a work may call `run` for its own key: it must not join itself),
    // unless it already finished — a `work` that threw synchronously ran the `finally` above already.
    if (!finished) this.inFlight.set(key, created);
    return created;
  }
}

/** The engine's build sharing: an aborted caller is rejected with a CancelledError ("Build cancelled"). */
export class SharedWork<T> {
  private readonly builds = new InFlight<T>();

  /** Number of distinct works running (for tests and diagnostics). */
  get size(): number {
    return this.builds.size;
  }

  run(key: string, work: (signal: AbortSignal, emit: EventListener) => Promise<T>, options: ShareOptions = {}): Promise<T> {
    return this.builds.run(key, work, { ...options, cancelled: (signal) => new CancelledError("Build cancelled", { cause: signal.reason }) });
  }
}
