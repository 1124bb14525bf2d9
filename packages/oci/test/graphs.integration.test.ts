// Image graphs with the daemonless oci builder (issue 17): each base is read from the registry it was
// pushed to. A chain three deep on a loopback registry, a change at each level rebuilding that level
// and the ones above; the top image run by docker holds every level. A Kiln base kept only in a local
// daemon is refused by canBuild, saying why.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { build, Image, type BuildEvent } from "@kiln/core";
import { ensureBusyboxImage, uniqueName, type TestRegistry } from "@kiln/test-utils";
import { ociBuilder, registryWithBase, runPulled } from "./helpers.js";

let registry: TestRegistry;
let baseRef: string;
let dir: string;

beforeAll(async () => {
  ({ registry, baseRef } = await registryWithBase(await ensureBusyboxImage(), "kiln/busybox:1.35"));
  dir = mkdtempSync(join(tmpdir(), "kiln-oci-graph-"));
  writeFileSync(join(dir, "bottom.txt"), "bottom v1\n");
  writeFileSync(join(dir, "top.txt"), "top v1\n");
}, 180_000);
afterAll(async () => {
  await registry?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const names = { bottom: uniqueName("oci-graph-bottom"), middle: uniqueName("oci-graph-middle"), top: uniqueName("oci-graph-top") };
const builder = () => ociBuilder(join(dir, "layer-cache"));

function declare(middleValue: string) {
  const bottom = Image.fromBase(baseRef, { registry: registry.host, name: names.bottom }).withSourceFile(join(dir, "bottom.txt"), "/levels/bottom.txt");
  const middle = Image.fromBase(bottom, { registry: registry.host, name: names.middle }).withEnvVars({ MIDDLE: middleValue });
  return Image.fromBase(middle, { registry: registry.host, name: names.top }).withSourceFile(join(dir, "top.txt"), "/levels/top.txt");
}

async function buildTop(top: Image): Promise<{ built: string[]; uri: string }> {
  const events: BuildEvent[] = [];
  const result = await build(top, { builder: builder(), onEvent: (e) => events.push(e) });
  const level = (uri: string) => Object.entries(names).find(([, name]) => uri.includes(`/${name}:`))![0];
  return { built: events.filter((e): e is Extract<BuildEvent, { type: "done" }> => e.type === "done" && e.built).map((e) => level(e.image)), uri: result.uri! };
}

const run = (uri: string, script: string) => runPulled(uri, ["sh", "-c", script]);

describe("image graphs with the oci builder", () => {
  it("builds the chain bottom first, each read from the registry; a change rebuilds that level and above only", async () => {
    const first = await buildTop(declare("1"));
    expect(first.built).toEqual(["bottom", "middle", "top"]);
    expect(await run(first.uri, "cat /levels/bottom.txt /levels/top.txt; echo $MIDDLE")).toBe("bottom v1\ntop v1\n1\n");
    expect((await buildTop(declare("1"))).built).toEqual([]);
    writeFileSync(join(dir, "top.txt"), "top v2\n");
    expect((await buildTop(declare("1"))).built).toEqual(["top"]);
    expect((await buildTop(declare("2"))).built).toEqual(["middle", "top"]);
    writeFileSync(join(dir, "bottom.txt"), "bottom v2\n");
    const last = await buildTop(declare("2"));
    expect(last.built).toEqual(["bottom", "middle", "top"]);
    expect(await run(last.uri, "cat /levels/bottom.txt /levels/top.txt; echo $MIDDLE")).toBe("bottom v2\ntop v2\n2\n");
  }, 300_000);

  it("canBuild refuses an image whose Kiln base has no registry (it would live in a local daemon only)", () => {
    const local = Image.fromBase(baseRef, { name: "local-only-base" }).withEnvVars({ A: "1" });
    const above = Image.fromBase(local, { registry: registry.host, name: "above" }).withEnvVars({ B: "1" });
    const answer = builder().canBuild(above);
    expect(answer.ok).toBe(false);
    expect(!answer.ok && answer.reason).toContain(`its base image ${local.uri} is a Kiln image without a registry`);
  });
});
