// Decoding the Engine's build streams, on bytes recorded from this machine's Engine 20.10 (BuildKit
// and classic builds of a Dockerfile whose last RUN fails).
import { readFileSync } from "node:fs";
import { Readable } from "node:stream";
import { BuildFailedError, type BuildEvent } from "@kiln/core";
import { describe, expect, it } from "vitest";
import { decodeTraceAux } from "../src/build/buildkitTrace.js";
import { followBuild } from "../src/build/buildProgress.js";
import { readJsonMessages } from "../src/daemon/jsonStream.js";

const fixture = (name: string) => readFileSync(new URL(`./fixtures/${name}`, import.meta.url));

/** Splits a buffer into small chunks so messages straddle chunk boundaries, as on a real socket. */
function chunked(data: Buffer, size = 37): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) parts.push(data.subarray(i, i + size));
  return Readable.from(parts);
}

async function run(name: string) {
  const events: BuildEvent[] = [];
  let error: unknown;
  let outcome;
  try {
    outcome = await followBuild(chunked(fixture(name)), { image: "example:1", platform: "linux/amd64", onEvent: (e) => events.push(e) });
  } catch (e) {
    error = e;
  }
  return { events, error, outcome };
}

describe("BuildKit trace decoding", () => {
  it("decodes vertex names, cache flags and logs from the protobuf aux messages", () => {
    const lines = fixture("buildkit-failing-run.jsonl")
      .toString()
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    const traces = lines.filter((l) => l.id === "moby.buildkit.trace").map((l) => decodeTraceAux(l.aux));
    const names = new Set(traces.flatMap((t) => t.vertexes.map((v) => v.name)));
    expect(names).toContain("[stage-0 2/4] RUN echo hello-from-run && echo second line");
    const logText = traces.flatMap((t) => t.logs.map((l) => l.data.toString())).join("");
    expect(logText).toContain("hello-from-run");
    const failed = traces.flatMap((t) => t.vertexes).find((v) => v.error);
    expect(failed?.name).toBe("[stage-0 4/4] RUN echo about to fail && false");
    expect(failed?.error).toMatch(/exit code: 1/);
    const started = traces.flatMap((t) => t.vertexes).find((v) => v.started !== undefined)!;
    expect(started.started).toBeGreaterThan(Date.UTC(2020, 0, 1));
  });

  it("turns a failing RUN into BuildFailedError with the step and its log tail", async () => {
    const { events, error } = await run("buildkit-failing-run.jsonl");
    expect(BuildFailedError.isInstance(error)).toBe(true);
    const failure = error as BuildFailedError;
    expect(failure.details?.step).toBe("[stage-0 4/4] RUN echo about to fail && false");
    expect(failure.details?.logTail).toEqual(["about to fail"]);
    expect(failure.message).toContain("exit code: 1");
    const steps = events.filter((e) => e.type === "build.step").map((e) => (e as { step: string }).step);
    expect(steps).toEqual([
      "[stage-0 1/4] FROM docker.io/kiln-test/busybox:1.35",
      "[stage-0 2/4] RUN echo hello-from-run && echo second line",
      "[stage-0 3/4] RUN --mount=type=cache,target=/cache echo cached-mount > /cache/x && cat /cache/x",
      "[stage-0 4/4] RUN echo about to fail && false",
    ]);
    const step2 = events.find((e) => e.type === "build.step" && e.step.includes("2/4"));
    expect(step2).toMatchObject({ index: 2, total: 4, platform: "linux/amd64" });
    const logs = events.filter((e) => e.type === "build.log").map((e) => (e as { line: string }).line);
    expect(logs).toEqual(["hello-from-run", "second line", "cached-mount", "about to fail"]);
  });

  it("returns the image ID of a successful build", async () => {
    const { outcome, error } = await run("buildkit-ok.jsonl");
    expect(error).toBeUndefined();
    const idLine = fixture("buildkit-ok.jsonl")
      .toString()
      .split("\n")
      .find((l) => l.includes("moby.image.id"))!;
    expect(outcome?.imageId).toBe(JSON.parse(idLine).aux.ID);
  });
});

describe("classic builder stream", () => {
  it("reports Step lines as steps and the failing step with its output", async () => {
    const { events, error } = await run("classic-failing-run.jsonl");
    const steps = events.filter((e) => e.type === "build.step").map((e) => (e as { step: string }).step);
    expect(steps).toEqual(["FROM kiln-test/busybox:1.35", "RUN echo hello-from-run && echo second line", "RUN echo about to fail && false"]);
    expect(BuildFailedError.isInstance(error)).toBe(true);
    expect((error as BuildFailedError).details).toMatchObject({ step: "RUN echo about to fail && false", logTail: ["about to fail"] });
    expect((error as Error).message).toContain("returned a non-zero code: 1");
  });

  it("fails a stream that ends without an image ID (a truncated answer)", async () => {
    const data = fixture("buildkit-ok.jsonl")
      .toString()
      .split("\n")
      .filter((l) => !l.includes("moby.image.id"))
      .join("\n");
    const { error } = await run.call(null, "buildkit-ok.jsonl").then(async () => {
      try {
        await followBuild(Readable.from([Buffer.from(data)]), { image: "example:1" });
        return { error: undefined };
      } catch (e) {
        return { error: e };
      }
    });
    expect(BuildFailedError.isInstance(error)).toBe(true);
    expect((error as Error).message).toMatch(/without producing an image/);
  });
});

describe("readJsonMessages", () => {
  it("reads every message, including a last line with no newline and multi-byte text split across chunks", async () => {
    const text = '{"stream":"héllo ✓\\n"}\r\n{"status":"x"}\n{"errorDetail":{"message":"boom"}}';
    const bytes = Buffer.from(text);
    const messages = [];
    for await (const m of readJsonMessages(chunked(bytes, 3))) messages.push(m);
    expect(messages).toEqual([{ stream: "héllo ✓\n" }, { status: "x" }, { errorDetail: { message: "boom" } }]);
  });
});
