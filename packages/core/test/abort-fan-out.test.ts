// abortFanOut.ts: many waiters on one signal through one abort listener, removed with the last of them.
import { getEventListeners } from "node:events";
import { describe, expect, it } from "vitest";
import { whenAborted } from "../src/abortFanOut.js";

const listeners = (signal: AbortSignal) => getEventListeners(signal, "abort").length;

describe("whenAborted", () => {
  it("50 waiters: one listener on the signal, none once each has stopped", () => {
    const controller = new AbortController();
    const stops = Array.from({ length: 50 }, () => whenAborted(controller.signal, () => {}));
    expect(listeners(controller.signal)).toBe(1);
    for (const stop of stops.slice(1)) stop();
    expect(listeners(controller.signal)).toBe(1);
    stops[0]!();
    stops[0]!();
    expect(listeners(controller.signal)).toBe(0);
  });

  it("an abort calls every waiter still registered, in order, once; stopped ones are not called", () => {
    const controller = new AbortController();
    const calls: number[] = [];
    const stops = [0, 1, 2, 3].map((i) => whenAborted(controller.signal, () => calls.push(i)));
    stops[2]!();
    controller.abort();
    controller.abort();
    expect(calls).toEqual([0, 1, 3]);
    expect(listeners(controller.signal)).toBe(0);
  });

  it("a waiter stopped by an earlier one during the abort is not called", () => {
    const controller = new AbortController();
    const calls: string[] = [];
    let stopSecond = () => {};
    whenAborted(controller.signal, () => {
      calls.push("first");
      stopSecond();
    });
    stopSecond = whenAborted(controller.signal, () => calls.push("second"));
    controller.abort();
    expect(calls).toEqual(["first"]);
  });

  it("the same callback registered twice is called twice; each stop removes its own", () => {
    const controller = new AbortController();
    let calls = 0;
    const callback = () => calls++;
    const stop = whenAborted(controller.signal, callback);
    whenAborted(controller.signal, callback);
    stop();
    controller.abort();
    expect(calls).toBe(1);
  });

  it("an already aborted signal calls at once and keeps no listener", () => {
    let calls = 0;
    const signal = AbortSignal.abort();
    whenAborted(signal, () => calls++)();
    expect(calls).toBe(1);
    expect(listeners(signal)).toBe(0);
  });
});
