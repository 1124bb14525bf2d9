import { describe, expect, it } from "vitest";
import { InFlight, SharedWork } from "../src/dedupe.js";
import { CancelledError } from "../src/errors.js";

describe("SharedWork", () => {
  it("callers without a signal share one run", async () => {
    const shared = new SharedWork<number>();
    let runs = 0;
    const work = async () => {
      runs++;
      await new Promise((r) => setTimeout(r, 20));
      return 7;
    };
    expect(await Promise.all([shared.run("k", work), shared.run("k", work)])).toEqual([7, 7]);
    expect(runs).toBe(1);
  });

  it("a caller arriving after the last caller cancelled starts fresh work instead of joining the cancelled one", async () => {
    const shared = new SharedWork<string>();
    let runs = 0;
    const work = (signal: AbortSignal) =>
      new Promise<string>((resolve, reject) => {
        const n = ++runs;
        const timer = setTimeout(() => resolve(`run ${n}`), 50);
        signal.addEventListener("abort", () => {
          // Winds down slowly, as a real build does after abort.
          setTimeout(() => reject(new Error("aborted work")), 30);
          clearTimeout(timer);
        });
      });
    const controller = new AbortController();
    const first = shared.run("k", work, { signal: controller.signal });
    controller.abort();
    await expect(first).rejects.toSatisfy((e) => CancelledError.isInstance(e));
    expect(await shared.run("k", work)).toBe("run 2");
  });

  it("an already-aborted caller starts no work at all", async () => {
    const shared = new SharedWork<string>();
    let runs = 0;
    const controller = new AbortController();
    controller.abort();
    await expect(shared.run("k", async () => `run ${++runs}`, { signal: controller.signal })).rejects.toSatisfy((e) => CancelledError.isInstance(e));
    expect(runs).toBe(0);
    expect(shared.size).toBe(0);
  });
});

describe("InFlight (the one in-flight sharing helper: builds, registry tokens, ECR tokens)", () => {
  /** Work that runs until released or aborted, counting its runs and aborts. */
  function controllable() {
    const state = { runs: 0, aborts: 0, release: (_value: string) => {}, emit: (_step: string) => {} };
    const work = (signal: AbortSignal, emit: (event: never) => void) =>
      new Promise<string>((resolve, reject) => {
        state.runs++;
        state.emit = (step) => emit({ type: "build.step", image: "x", step } as never);
        state.release = resolve;
        signal.addEventListener("abort", () => {
          state.aborts++;
          reject(new Error("work aborted"));
        });
      });
    return { state, work };
  }

  it("concurrent callers share one run and each hears its events; the key is forgotten once done", async () => {
    const inFlight = new InFlight<string>();
    const { state, work } = controllable();
    const heard: string[] = [];
    const a = inFlight.run("k", work, { onEvent: () => heard.push("a") });
    const b = inFlight.run("k", work, { signal: new AbortController().signal, onEvent: () => heard.push("b") });
    expect(inFlight.has("k")).toBe(true);
    expect(state.runs).toBe(1);
    state.emit("pulling");
    state.release("done");
    expect(await Promise.all([a, b])).toEqual(["done", "done"]);
    expect(heard.sort()).toEqual(["a", "b"]);
    expect(inFlight.size).toBe(0);
  });

  it("one caller's abort rejects that caller only; the work is aborted when its last caller has gone", async () => {
    const inFlight = new InFlight<string>();
    const { state, work } = controllable();
    const first = new AbortController();
    const second = new AbortController();
    const reason = new Error("first gave up");
    const a = inFlight.run("k", work, { signal: first.signal, cancelled: (s) => s.reason });
    const b = inFlight.run("k", work, { signal: second.signal, cancelled: () => new Error("second gave up") });
    first.abort(reason);
    await expect(a).rejects.toBe(reason);
    expect(state.aborts).toBe(0);
    expect(inFlight.has("k")).toBe(true);
    second.abort();
    await expect(b).rejects.toThrow("second gave up");
    expect(state.aborts).toBe(1);
    // Forgotten at once: a new caller starts fresh work rather than joining the aborted one.
    expect(inFlight.has("k")).toBe(false);
    const c = inFlight.run("k", work);
    expect(state.runs).toBe(2);
    state.release("fresh");
    expect(await c).toBe("fresh");
  });

  it("a caller without a signal gets the shared promise itself; its failure reaches every caller", async () => {
    const inFlight = new InFlight<string>();
    const failing = async () => {
      await new Promise((resolve) => setTimeout(resolve, 10));
      throw new Error("token service down");
    };
    const a = inFlight.run("k", failing);
    const b = inFlight.run("k", failing);
    expect(a).toBe(b);
    await expect(a).rejects.toThrow("token service down");
    expect(inFlight.size).toBe(0);
  });

  it("a work that throws synchronously is forgotten: the next caller runs the work again", async () => {
    const inFlight = new InFlight<string>();
    let runs = 0;
    const throwsAtOnce = ((): Promise<string> => {
      runs++;
      if (runs === 1) throw new Error("bad arguments");
      return Promise.resolve("second run");
    }) as () => Promise<string>;
    await expect(inFlight.run("k", throwsAtOnce)).rejects.toThrow("bad arguments");
    expect(inFlight.size).toBe(0);
    expect(await inFlight.run("k", throwsAtOnce)).toBe("second run");
    expect(runs).toBe(2);
  });

  it("an already-aborted caller starts nothing and is rejected with its cancellation error", async () => {
    const inFlight = new InFlight<string>();
    const { state, work } = controllable();
    await expect(inFlight.run("k", work, { signal: AbortSignal.abort(), cancelled: () => "cancelled!" })).rejects.toBe("cancelled!");
    expect(state.runs).toBe(0);
    expect(inFlight.size).toBe(0);
  });
});
