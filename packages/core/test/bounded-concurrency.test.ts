// boundedConcurrency.ts: Slots (buildAll), mapBounded (kiln plan, promotion's blob copies) and
// SignalScope — limits, order, abort and error semantics, and the abort listeners a shared signal carries.
import { getEventListeners } from "node:events";
import { describe, expect, it } from "vitest";
import { mapBounded, SignalScope, Slots } from "../src/boundedConcurrency.js";

const listeners = (signal: AbortSignal) => getEventListeners(signal, "abort").length;
const tick = () => new Promise((resolve) => setImmediate(resolve));

/** A promise settled from outside, to control when each item ends. */
function deferred<T = void>() {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe("Slots", () => {
  it("never hands out more than its size; waiters are served first come, first served", async () => {
    const slots = new Slots(3);
    const order: number[] = [];
    let running = 0;
    let most = 0;
    await Promise.all(
      Array.from({ length: 12 }, async (_, i) => {
        const release = await slots.acquire();
        order.push(i);
        running++;
        most = Math.max(most, running);
        await tick();
        running--;
        release();
      }),
    );
    expect(most).toBe(slots.size);
    expect(order).toEqual([...order].sort((a, b) => a - b));
    expect(slots.inUse).toBe(0);
  });

  it("a release called twice frees one slot only", async () => {
    const slots = new Slots(1);
    const release = await slots.acquire();
    const second = slots.acquire();
    const third = slots.acquire();
    release();
    release();
    await second;
    let thirdGranted = false;
    void third.then(() => (thirdGranted = true));
    await tick();
    expect(thirdGranted).toBe(false);
    expect(slots.inUse).toBe(1);
  });

  it("many waiters under one signal: that signal carries one abort listener, none once they are served", async () => {
    const slots = new Slots(1);
    const shared = new AbortController();
    const first = await slots.acquire(shared.signal);
    const waiting = Array.from({ length: 30 }, () => slots.acquire(shared.signal));
    expect(listeners(shared.signal)).toBe(1);
    first();
    for (const pending of waiting) (await pending)();
    expect(listeners(shared.signal)).toBe(0);
  });

  it("an abort rejects the waiters under that signal with its reason, and only them; their turn passes to the next", async () => {
    const slots = new Slots(1);
    const doomed = new AbortController();
    const held = await slots.acquire();
    const gone = [slots.acquire(doomed.signal), slots.acquire(doomed.signal)];
    const kept = slots.acquire();
    const reason = new Error("stop");
    doomed.abort(reason);
    for (const pending of gone) await expect(pending).rejects.toBe(reason);
    expect(listeners(doomed.signal)).toBe(0);
    held();
    const release = await kept;
    expect(slots.inUse).toBe(1);
    release();
    expect(slots.inUse).toBe(0);
  });

  it("an aborted signal is refused at once, taking no slot", async () => {
    const slots = new Slots(2);
    const reason = new Error("already");
    await expect(slots.acquire(AbortSignal.abort(reason))).rejects.toBe(reason);
    expect(slots.inUse).toBe(0);
  });

  it("refuses a size that is not a whole number of at least 1", () => {
    expect(() => new Slots(0)).toThrow(RangeError);
    expect(() => new Slots(1.5)).toThrow(RangeError);
  });
});

describe("SignalScope", () => {
  it("each operation's signal aborts with the shared one's reason; the shared one carries one listener, none after", async () => {
    const shared = new AbortController();
    const scope = new SignalScope(shared.signal);
    const opened = Array.from({ length: 20 }, () => scope.open());
    expect(listeners(shared.signal)).toBe(1);
    const reason = new Error("stop");
    shared.abort(reason);
    for (const { signal } of opened) expect(signal.reason).toBe(reason);
    for (const { close } of opened) close();
    expect(listeners(shared.signal)).toBe(0);
  });

  it("closing every operation removes the listener; a closed operation is not aborted later", () => {
    const shared = new AbortController();
    const scope = new SignalScope(shared.signal);
    const a = scope.open();
    const b = scope.open();
    a.close();
    expect(listeners(shared.signal)).toBe(1);
    b.close();
    b.close();
    expect(listeners(shared.signal)).toBe(0);
    shared.abort();
    expect(a.signal.aborted).toBe(false);
  });

  it("opened under an aborted signal: already aborted, with its reason", () => {
    const reason = new Error("gone");
    const { signal } = new SignalScope(AbortSignal.abort(reason)).open();
    expect(signal.reason).toBe(reason);
  });

  it("run() closes the operation however it ends", async () => {
    const shared = new AbortController();
    const scope = new SignalScope(shared.signal);
    await expect(scope.run(async () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    await scope.run(async (signal) => expect(signal.aborted).toBe(false));
    expect(listeners(shared.signal)).toBe(0);
  });
});

describe("mapBounded", () => {
  it("respects the limit and returns results in the items' order, whatever order they end in", async () => {
    const items = Array.from({ length: 15 }, (_, i) => i);
    let running = 0;
    let most = 0;
    const results = await mapBounded(items, 4, async (item) => {
      running++;
      most = Math.max(most, running);
      // Later items end sooner.
      await new Promise((resolve) => setTimeout(resolve, (items.length - item) % 5));
      running--;
      return item * 10;
    });
    expect(most).toBe(4);
    expect(results).toEqual(items.map((i) => i * 10));
  });

  it("an empty list gives an empty result", async () => {
    expect(await mapBounded([], 3, async () => 1)).toEqual([]);
  });

  it("the first failure starts no further item, waits for those under way, then is thrown", async () => {
    const started: number[] = [];
    const slow = deferred();
    let slowEnded = false;
    const failure = new Error("item 1 failed");
    const running = mapBounded([0, 1, 2, 3, 4], 2, async (item) => {
      started.push(item);
      if (item === 0) {
        await slow.promise;
        slowEnded = true;
      }
      if (item === 1) throw failure;
      return item;
    });
    let settled = false;
    void running.catch(() => (settled = true));
    await tick();
    expect(settled).toBe(false); // item 0 is still under way
    slow.resolve();
    await expect(running).rejects.toBe(failure);
    expect(slowEnded).toBe(true);
    expect(started).toEqual([0, 1]);
  });

  it("an abort starts no further item, aborts each item's own signal, and rejects", async () => {
    const shared = new AbortController();
    const started: number[] = [];
    const running = mapBounded(
      [0, 1, 2, 3, 4, 5],
      2,
      (item, _index, signal) =>
        new Promise<number>((resolve, reject) => {
          started.push(item);
          signal.addEventListener("abort", () => reject(signal.reason), { once: true });
          if (item > 1) resolve(item);
        }),
      { signal: shared.signal },
    );
    await tick();
    const reason = new Error("interrupted");
    shared.abort(reason);
    await expect(running).rejects.toBe(reason);
    expect(started).toEqual([0, 1]);
    expect(listeners(shared.signal)).toBe(0);
  });

  it("an already aborted signal runs nothing", async () => {
    const reason = new Error("before");
    let calls = 0;
    await expect(mapBounded([1, 2], 2, async () => ++calls, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    expect(calls).toBe(0);
  });

  it("items adding listeners to their signal put none on the shared one beyond one (Node warns past 10)", async () => {
    const shared = new AbortController();
    let most = 0;
    await mapBounded(
      Array.from({ length: 40 }, (_, i) => i),
      20,
      async (_item, _index, signal) => {
        const onAbort = () => {};
        signal.addEventListener("abort", onAbort);
        most = Math.max(most, listeners(shared.signal));
        await tick();
        signal.removeEventListener("abort", onAbort);
      },
      { signal: shared.signal },
    );
    expect(most).toBe(1);
    expect(listeners(shared.signal)).toBe(0);
  });

  it("refuses a limit that is not a whole number of at least 1", async () => {
    await expect(mapBounded([1], 0, async (x) => x)).rejects.toThrow(RangeError);
  });
});
