// Issue 12 item 1 on the machine's real Docker Engine and a real registry: a source file saved while a
// build runs is never pushed under the tag computed from its old content. Incremental stages key and
// stream from the snapshot taken with the tag; a one-shot build's context fails before its archive is
// complete, so the daemon builds nothing. The races are driven by core's testing-only snapshot hook
// (a Symbol.for key on globalThis), and once by the issue's own scenario: a save during `sleep`.
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { build, Image, SourceChangedError, type BuildEvent } from "@kiln/core";
import { DockerCleanup, ensureBusyboxImage, localImageExists, runInImage, startRegistry, uniqueName, type TestRegistry } from "@kiln/test-utils";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { DockerImageBuilder } from "../src/builder.js";
import { collector, tempTree } from "./helpers.js";

const HOOKS = Symbol.for("kiln.testing.snapshotHooks");
type Hooks = { beforeStreaming?(paths: readonly string[]): void | Promise<void> };
const setHooks = (hooks: Hooks | undefined) => ((globalThis as Record<symbol, unknown>)[HOOKS] = hooks);

let busybox: string;
let registry: TestRegistry;
const cleanup = new DockerCleanup();
const dirs: string[] = [];

beforeAll(async () => {
  busybox = await ensureBusyboxImage();
  registry = await startRegistry({ auth: "none" });
});
afterEach(() => setHooks(undefined));
afterAll(async () => {
  await cleanup.run();
  await registry?.stop();
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function manifestStatus(uri: string): Promise<number> {
  const slash = uri.indexOf("/");
  const colon = uri.lastIndexOf(":");
  const res = await fetch(`http://${uri.slice(0, slash)}/v2/${uri.slice(slash + 1, colon)}/manifests/${uri.slice(colon + 1)}`, {
    method: "HEAD",
    headers: {
      accept: "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
    },
  });
  return res.status;
}

async function source(): Promise<{ dir: string; file: string }> {
  const dir = await tempTree({ "main.txt": "version one\n", "lib/util.txt": "util\n" }, "kiln-snapshot-src-");
  dirs.push(dir);
  return { dir, file: join(dir, "main.txt") };
}

/** Runs `build` and returns its error (the test fails if it succeeds). */
async function failure(run: Promise<unknown>): Promise<unknown> {
  return run.then(
    () => expect.unreachable("the build succeeded"),
    (error: unknown) => error,
  );
}

function expectSourceChanged(error: unknown, file: string): void {
  expect(SourceChangedError.isInstance(error), String(error)).toBe(true);
  expect((error as Error).message).toContain(JSON.stringify(file));
  expect((error as Error).message).toMatch(/content changed/);
}

function trackStages(events: BuildEvent[]): void {
  for (const e of events) if (e.type === "build.stage") cleanup.image(e.ref);
}

describe("a source file saved during an incremental build", () => {
  it("fails the later stage with SourceChangedError: nothing is tagged or pushed under the old tag", async () => {
    const { dir, file } = await source();
    const image = Image.fromBase(busybox, { registry: registry.host, name: uniqueName("kiln-snap-incr") })
      .withCommands("echo dependency > /dep.txt")
      .withSourceFolder(dir, "/app");
    const uri = cleanup.image(image.uri); // the tag of "version one"
    let stage1Streams = 0;
    setHooks({
      beforeStreaming: async (paths) => {
        // The source stage's context starts streaming only after the RUN stage was built.
        if (paths.includes("kiln-layers/1/main.txt") && stage1Streams++ === 0) await writeFile(file, "version TWO\n");
      },
    });
    const c = collector();
    const error = await failure(build(image, { builder: new DockerImageBuilder(), onEvent: c.onEvent }));
    trackStages(c.events);
    expectSourceChanged(error, file);
    expect(stage1Streams).toBe(1);
    expect(c.of("build.stage").map((e) => [e.stage, e.status])).toEqual([[0, "built"]]);
    expect(c.of("push.done")).toEqual([]);
    expect(await localImageExists(uri)).toBe(false);
    expect(await manifestStatus(uri)).toBe(404);

    // Run again: a new snapshot, a new tag, the new content — and the RUN stage reused.
    setHooks(undefined);
    const again = collector();
    const result = await build(image, { builder: new DockerImageBuilder(), onEvent: again.onEvent });
    trackStages(again.events);
    cleanup.image(result.uri!);
    expect(result.uri).not.toBe(uri);
    expect(again.of("build.stage").map((e) => [e.stage, e.status])).toEqual([
      [0, "reused"],
      [1, "built"],
    ]);
    expect((await runInImage(result.uri!, ["cat", "/app/main.txt"])).trim()).toBe("version TWO");
  });

  it("the issue's scenario: a save while a `sleep` stage runs is caught, not pushed with the old tag", async () => {
    const { dir, file } = await source();
    const name = uniqueName("kiln-snap-sleep");
    const image = Image.fromBase(busybox, { registry: registry.host, name })
      .withCommands(`sleep 4 && echo ${name}`) // unique: the daemon's build cache never skips the sleep
      .withSourceFolder(dir, "/app");
    const uri = cleanup.image(image.uri);
    let saved = false;
    const c = collector();
    const onEvent = (event: BuildEvent) => {
      c.onEvent(event);
      // The editor saves while the daemon runs `sleep 4` (the source stage has not started).
      if (!saved && event.type === "build.step" && event.step.includes("sleep 4")) {
        saved = true;
        void writeFile(file, "version TWO\n");
      }
    };
    const started = Date.now();
    const error = await failure(build(image, { builder: new DockerImageBuilder(), onEvent }));
    trackStages(c.events);
    expect(saved).toBe(true);
    expect(Date.now() - started).toBeGreaterThan(4000); // the save happened while `sleep 4` ran
    expect(c.of("build.stage").map((e) => [e.stage, e.status])).toEqual([[0, "built"]]);
    expectSourceChanged(error, file);
    expect(c.of("push.done")).toEqual([]);
    expect(await localImageExists(uri)).toBe(false);
    expect(await manifestStatus(uri)).toBe(404);
    expect(await readFile(file, "utf8")).toBe("version TWO\n");
  });
});

describe("a source file saved after the tag, one-shot build", () => {
  for (const buildkit of [true, false]) {
    it(`${buildkit ? "BuildKit" : "classic builder"}: the daemon gets an incomplete context and builds nothing; SourceChangedError`, async () => {
      const { dir, file } = await source();
      const image = Image.fromBase(busybox, { registry: registry.host, name: uniqueName("kiln-snap-one") }).withSourceFolder(dir, "/app");
      const uri = cleanup.image(image.uri);
      setHooks({ beforeStreaming: () => writeFile(file, "version TWO\n") });
      const c = collector();
      const error = await failure(build(image, { builder: new DockerImageBuilder({ incremental: false, buildkit }), onEvent: c.onEvent }));
      expectSourceChanged(error, file);
      expect(c.of("push.done")).toEqual([]);
      expect(await localImageExists(uri)).toBe(false);
      expect(await manifestStatus(uri)).toBe(404);
    });
  }
});
