import { describe, expect, it } from "vitest";
import { SharedWork } from "../src/dedupe.js";
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
