// Image graphs with the real Docker Engine and a real registry on loopback (issue 17): three images,
// each built on the one below (Image.fromBase(otherImage)); a change at each level rebuilds that level
// and the ones above, and nothing below. The top image is run: it holds every level's file.
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { build, buildAll, Image, type BuildEvent } from "@kiln/core";
import { DockerCleanup, ensureBusyboxImage, runInImage, startRegistry, uniqueName, type TestRegistry } from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DockerImageBuilder } from "../src/builder.js";
import { tempTree } from "./helpers.js";

let busybox: string;
let registry: TestRegistry;
let dir: string;
const cleanup = new DockerCleanup();

beforeAll(async () => {
  busybox = await ensureBusyboxImage();
  registry = await startRegistry({ auth: "none" });
  dir = await tempTree({ "bottom.txt": "bottom v1\n", "top.txt": "top v1\n" }, "kiln-graphs-");
}, 180_000);
afterAll(async () => {
  await cleanup.run();
  await registry?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const names = { bottom: uniqueName("kiln-graph-bottom"), middle: uniqueName("kiln-graph-middle"), top: uniqueName("kiln-graph-top") };

/** The chain as declared now (files read at declaration, as a spec would be loaded again). */
function declare(middleValue: string) {
  const bottom = Image.fromBase(busybox, { registry: registry.host, name: names.bottom }).withSourceFile(join(dir, "bottom.txt"), "/levels/bottom.txt");
  const middle = Image.fromBase(bottom, { registry: registry.host, name: names.middle }).withEnvVars({ MIDDLE: middleValue });
  const top = Image.fromBase(middle, { registry: registry.host, name: names.top }).withSourceFile(join(dir, "top.txt"), "/levels/top.txt");
  for (const image of [bottom, middle, top]) cleanup.image(image.uri);
  return { bottom, middle, top };
}

/** Builds the top image; returns which levels were built (done events with built: true), by name. */
async function buildTop(top: Image): Promise<{ built: string[]; uri: string }> {
  const events: BuildEvent[] = [];
  const result = await build(top, { builder: new DockerImageBuilder(), onEvent: (e) => events.push(e) });
  const level = (uri: string) => Object.entries(names).find(([, name]) => uri.includes(`/${name}:`))![0];
  const built = events.filter((e): e is Extract<BuildEvent, { type: "done" }> => e.type === "done" && e.built).map((e) => level(e.image));
  return { built, uri: result.uri! };
}

describe("image graphs with the docker builder", () => {
  it("builds the chain bottom first; a change at each level rebuilds only that level and above", async () => {
    let chain = declare("1");
    const first = await buildTop(chain.top);
    expect(first.built).toEqual(["bottom", "middle", "top"]);
    expect(first.uri).toBe(chain.top.uri);
    expect(await runInImage(first.uri, ["sh", "-c", "cat /levels/bottom.txt /levels/top.txt; echo $MIDDLE"])).toBe("bottom v1\ntop v1\n1\n");

    // Nothing changed: every level found.
    expect((await buildTop(declare("1").top)).built).toEqual([]);

    // Top changed: only the top.
    writeFileSync(join(dir, "top.txt"), "top v2\n");
    chain = declare("1");
    expect((await buildTop(chain.top)).built).toEqual(["top"]);

    // Middle changed: middle and top.
    chain = declare("2");
    const middleRun = await buildTop(chain.top);
    expect(middleRun.built).toEqual(["middle", "top"]);
    expect(await runInImage(middleRun.uri, ["sh", "-c", "echo $MIDDLE; cat /levels/top.txt"])).toBe("2\ntop v2\n");

    // Bottom changed: all three.
    writeFileSync(join(dir, "bottom.txt"), "bottom v2\n");
    chain = declare("2");
    const bottomRun = await buildTop(chain.top);
    expect(bottomRun.built).toEqual(["bottom", "middle", "top"]);
    expect(await runInImage(bottomRun.uri, ["cat", "/levels/bottom.txt"])).toBe("bottom v2\n");
  }, 600_000);

  it("buildAll: two images on one base build the base once, and report it", async () => {
    const shared = uniqueName("v");
    const base = Image.fromBase(busybox, { registry: registry.host, name: uniqueName("kiln-graph-shared") }).withEnvVars({ SHARED: shared });
    const a = Image.fromBase(base, { registry: registry.host, name: uniqueName("kiln-graph-a") }).withEnvVars({ A: "1" });
    const b = Image.fromBase(base, { registry: registry.host, name: uniqueName("kiln-graph-b") }).withEnvVars({ B: "1" });
    for (const image of [base, a, b]) cleanup.image(image.uri);
    const results = await buildAll(
      [
        { name: "a", image: a },
        { name: "b", image: b },
      ],
      { builder: new DockerImageBuilder() },
    );
    expect(results.map((r) => [r.name, r.action, r.dependency])).toEqual([
      ["a", "built", false],
      ["b", "built", false],
      [base.uri, "built", true],
    ]);
    for (const r of results) expect(r.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(await runInImage(b.uri, ["sh", "-c", "echo $SHARED"])).toBe(`${shared}\n`);
  }, 600_000);
});
