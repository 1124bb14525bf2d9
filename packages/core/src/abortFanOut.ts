/**
 * `whenAborted(signal, callback)`: run `callback` when `signal` aborts, until the returned function
 * is called (when the operation that asked ends). However many operations wait on one signal at once
 * (every image of a run on the CLI's Ctrl-C signal, 20 concurrent `build()` calls sharing a caller's
 * signal), the signal carries ONE abort listener, and none once they have all ended.
 *
 * Why: a listener added to a signal that never fires stays until removed (`{ once: true }` only
 * removes it when the signal fires), and Node prints MaxListenersExceededWarning past 10 on one
 * signal. Raising that limit would hide a real leak; counting the waiters ourselves does not.
 */

interface FanOut {
  callbacks: Set<() => void>;
  listener: () => void;
}

const fanOuts = new WeakMap<AbortSignal, FanOut>();

/** Calls `callback` once when `signal` aborts (at once if it already has); the returned function stops that. */
export function whenAborted(signal: AbortSignal, callback: () => void): () => void {
  if (signal.aborted) {
    callback();
    return () => {};
  }
  let fanOut = fanOuts.get(signal);
  if (fanOut === undefined) {
    const callbacks = new Set<() => void>();
    const listener = () => {
      fanOuts.delete(signal);
      let failure: { error: unknown } | undefined;
      // In the order they were registered, as separate listeners would be; one throwing stops none of the others.
      for (const each of [...callbacks]) {
        // One stopped by an earlier callback is not called, as a removed listener would not be.
        if (!callbacks.has(each)) continue;
        try {
          each();
        } catch (error) {
          failure ??= { error };
        }
      }
      callbacks.clear();
      if (failure !== undefined) throw failure.error;
    };
    fanOut = { callbacks, listener };
    fanOuts.set(signal, fanOut);
    signal.addEventListener("abort", listener, { once: true });
  }
  // A wrapper of our own, so the same function registered twice is two registrations.
  const registration = () => callback();
  const registered = fanOut;
  registered.callbacks.add(registration);
  return () => {
    if (!registered.callbacks.delete(registration) || registered.callbacks.size > 0) return;
    if (fanOuts.get(signal) === registered) fanOuts.delete(signal);
    signal.removeEventListener("abort", registered.listener);
  };
}
