// Which classic-builder step container a build leaves open when its stream ends, on bytes recorded
// from this machine's Engine 20.10: none after a failed step (the daemon's forcerm removed it and
// said so), the running one when the stream breaks off mid-step (the daemon went away).
import { readFileSync } from "node:fs";
import { Readable } from "node:stream";
import { BuildFailedError, type BuildEvent } from "@kiln/core";
import { describe, expect, it } from "vitest";
import { followBuild } from "../src/buildProgress.js";
import { StepContainers } from "../src/orphanContainers.js";

const lines = readFileSync(new URL("./fixtures/classic-failing-run.jsonl", import.meta.url), "utf8").trim().split("\n");

async function follow(messages: string[]) {
  const seen: string[] = [];
  const tracker = new StepContainers();
  const spy = {
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

  it("a stream that breaks off mid-step (the daemon died): the running step's container is left open", async () => {
    const cut = lines.slice(0, lines.findIndex((l) => l.includes("hello-from-run\\nsecond line")) + 1);
    const { open, error } = await follow(cut);
    expect(BuildFailedError.isInstance(error)).toBe(true);
    expect(open).toBe("bac5063311a6");
  });

  it("a removal line for another container does not close the open one", () => {
    const tracker = new StepContainers();
    tracker.started("aaaaaaaaaaaa");
    tracker.removed("bbbbbbbbbbbb");
    expect(tracker.current).toBe("aaaaaaaaaaaa");
    tracker.removed("aaaaaaaaaaaa");
    expect(tracker.current).toBeUndefined();
  });
});
