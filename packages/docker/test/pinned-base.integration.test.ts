// pinBase with the Docker builder (real Docker Engine, real registry): the rendered `FROM ref@digest`
// builds on exactly the pinned base, even after its tag moved; build({ pinBase }) resolves the tag's
// current digest, so the image built then is on the moved base (and has another tag).
import { rm } from "node:fs/promises";
import { Image, build, clearBaseDigestCache } from "@kiln/core";
import { DockerCleanup, docker, ensureBusyboxImage, pushMovingBase, startRegistry, uniqueName, type TestRegistry } from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DockerImageBuilder } from "../src/builder.js";

let registry: TestRegistry;
const cleanup = new DockerCleanup();
const dirs: string[] = [];

beforeAll(async () => {
  await ensureBusyboxImage();
  registry = await startRegistry();
});

afterAll(async () => {
  await cleanup.run();
  await Promise.all([registry?.stop(), ...dirs.map((d) => rm(d, { recursive: true, force: true }))]);
});

const run = (uri: string, script: string) => docker(["run", "--rm", "--network", "none", uri, "sh", "-c", script], { timeoutMs: 120_000 });

describe("DockerImageBuilder with a base pinned by digest", () => {
  it("builds FROM the pinned digest after the tag moved; pinBase then picks up the moved base", async () => {
    // The tag moves upstream: a base with a marker file.
    const { baseRef, original, moved } = await pushMovingBase(registry.host, uniqueName("pin-base"), cleanup);
    expect(moved).not.toBe(original);

    const declared = Image.fromBase(baseRef, { registry: registry.host, name: uniqueName("pinned-app") }).withEnvVars({ MODE: "pinned" });
    const builder = new DockerImageBuilder();

    const onOriginal = declared.withBaseDigest(original);
    cleanup.image(onOriginal.uri);
    const first = await builder.buildImage(onOriginal, {});
    expect(first.uri).toBe(onOriginal.uri);
    expect((await run(onOriginal.uri, "test -e /moved && echo moved || echo original")).trim()).toBe("original");

    clearBaseDigestCache();
    const resolved = await build(declared, { builder, pinBase: true, force: true });
    expect(resolved.uri).toBe(declared.withBaseDigest(moved).uri);
    expect(resolved.uri).not.toBe(onOriginal.uri);
    cleanup.image(resolved.uri!);
    expect((await run(resolved.uri!, "test -e /moved && echo moved || echo original")).trim()).toBe("moved");
  });
});
