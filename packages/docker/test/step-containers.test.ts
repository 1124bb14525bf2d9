// Which classic-builder step container a build leaves open when its stream ends, on bytes recorded
// from this machine's Engine 20.10: none after a failed step (the daemon's forcerm removed it and
// said so), the running one when the stream breaks off mid-step (the daemon went away) — and never
// one that a step's own output named by printing look-alikes of the daemon's lines.
import { readFileSync } from "node:fs";
import { Readable } from "node:stream";
import { BuildFailedError, type BuildEvent } from "@kiln/core";
import { describe, expect, it } from "vitest";
import { followBuild } from "../src/build/buildProgress.js";
import { StepContainers } from "../src/orphans/orphanContainers.js";

const recorded = (name: string) =>
  readFileSync(new URL(`./fixtures/${name}`, import.meta.url), "utf8")
    .trim()
    .split("\n");
const lines = recorded("classic-failing-run.jsonl");
/** Step 3 prints ` ---> Running in 0123456789ab`, then a fake `Step 4/3 :` line and the same again, then fails. */
const forgedRunningIn = recorded("classic-forged-running-in.jsonl");
/** Step 3 prints `Removing intermediate container <its own ID (its hostname)>`, a fake step and `Running in 0123456789ab`, then fails. */
const forgedRemoval = recorded("classic-forged-removal.jsonl");
const FORGED = "0123456789ab";
/** The messages up to and including the first whose text starts with `text`: the stream as a dying daemon leaves it. */
const cutAfter = (messages: string[], text: string) => {
  const index = messages.findIndex((l) => (JSON.parse(l) as { stream?: string }).stream?.startsWith(text));
  if (index < 0) throw new Error(`No message starts with ${JSON.stringify(text)}`);
  return messages.slice(0, index + 1);
};

async function follow(messages: string[]) {
  const seen: string[] = [];
  const tracker = new StepContainers(1_000);
  const spy = {
    step: () => tracker.step(),
    started: (id: string) => (seen.push(`started ${id}`), tracker.started(id)),
    removed: (id: string) => (seen.push(`removed ${id}`), tracker.removed(id)),
  };
  const events: BuildEvent[] = [];
  let error: unknown;
  try {
    await followBuild(Readable.from([Buffer.from(messages.join("\n") + "\n")]), { image: "example:1", onEvent: (e) => events.push(e), stepContainers: spy });
  } catch (e) {
    error = e;
  }
  return { seen, open: tracker.current, events, error };
}

describe("step containers of a classic build", () => {
  it("a step that fails: the daemon removed its container before reporting the error, so none is left open", async () => {
    const { seen, open, error, events } = await follow(lines);
    expect(BuildFailedError.isInstance(error)).toBe(true);
    expect(seen).toEqual(["started bac5063311a6", "removed bac5063311a6", "started 727f66276114", "removed 727f66276114"]);
    expect(open).toBeUndefined();
    // The bookkeeping lines stay out of the build log.
    const logged = events.flatMap((e) => (e.type === "build.log" ? [e.line] : []));
    expect(logged.some((l) => /Running in|Removing intermediate/.test(l))).toBe(false);
    expect(logged).toContain("about to fail");
  });

  it("a stream that breaks off mid-step (the daemon died): the running step's container is left open, with its build's start", async () => {
    const { open, error } = await follow(cutAfter(lines, "hello-from-run\nsecond line"));
    expect(BuildFailedError.isInstance(error)).toBe(true);
    expect(open).toEqual({ id: "bac5063311a6", buildStartedAt: 1_000 });
  });

  describe("a step's output that imitates the daemon's lines", () => {
    it("`Running in` (also after a fake `Step N/M :` line) printed by a failing step: only the real container is tracked, and none is left", async () => {
      const { seen, open, error } = await follow(forgedRunningIn);
      expect(BuildFailedError.isInstance(error)).toBe(true);
      expect(seen.filter((s) => s.includes(FORGED))).toHaveLength(2); // the stream did carry the look-alikes…
      expect(open).toBeUndefined(); // …but what the daemon removed closes what the tracker holds
      // Cut right after the forged lines (the daemon dies then): the real step container is the open one.
      const cut = await follow(cutAfter(forgedRunningIn, ` ---> Running in ${FORGED}`));
      expect(cut.open).toEqual({ id: "619a7d914ebb", buildStartedAt: 1_000 });
    });

    it("a forged removal of the step's own container followed by a fake step: the daemon's real removal exposes it, nothing is recorded", async () => {
      const { open, error } = await follow(forgedRemoval);
      expect(BuildFailedError.isInstance(error)).toBe(true);
      expect(open).toBeUndefined();
      // The residue: cut after the forgery, before the daemon's own removal line, the stream cannot
      // tell — the sweep's creation-time window (orphanContainers.ts, the engine-faults test) bounds what that can name.
      const cut = await follow(cutAfter(forgedRemoval, "Removing intermediate container 0b781e59e869\n"));
      expect(cut.open?.id).toBe(FORGED);
    });

    it("a nested build's log (other IDs, their own steps and removals) inside a step leaves the real container open", () => {
      const tracker = new StepContainers(1);
      tracker.step();
      tracker.started("aaaaaaaaaaaa");
      tracker.step(); // the nested build's "Step 1/2 :"
      tracker.started("bbbbbbbbbbbb");
      tracker.removed("bbbbbbbbbbbb");
      expect(tracker.current).toEqual({ id: "aaaaaaaaaaaa", buildStartedAt: 1 });
      tracker.removed("aaaaaaaaaaaa");
      expect(tracker.current).toBeUndefined();
      tracker.step(); // the next real step
      tracker.started("cccccccccccc");
      expect(tracker.current?.id).toBe("cccccccccccc");
    });
  });

  it("a removal line for another container does not close the open one; no container is taken without a step line", () => {
    const tracker = new StepContainers();
    tracker.started("dddddddddddd");
    expect(tracker.current).toBeUndefined();
    tracker.step();
    tracker.started("aaaaaaaaaaaa");
    tracker.removed("bbbbbbbbbbbb");
    expect(tracker.current?.id).toBe("aaaaaaaaaaaa");
    tracker.removed("aaaaaaaaaaaa");
    expect(tracker.current).toBeUndefined();
  });
});
