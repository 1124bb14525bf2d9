/**
 * pinBase with the daemonless oci builder: the base is read by its pinned digest (`ref@sha256:…`), so an
 * image pinned before the base tag moved is still built on the original base; build({ pinBase }) then
 * resolves the moved tag. `docker run` of what was pushed tells which base it has (real registry and
 * daemon; the bases are made locally with docker).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Image, build, clearBaseDigestCache } from "@kiln/core";
import { DockerCleanup, ensureBusyboxImage, pushMovingBase, startRegistry, uniqueName, type TestRegistry } from "@kiln/test-utils";
import { TempDirs, ociBuilder, runPulled } from "./helpers.js";

let registry: TestRegistry;
let layerCache: string;
const cleanup = new DockerCleanup();
const tempDirs = new TempDirs();

beforeAll(async () => {
  await ensureBusyboxImage();
  registry = await startRegistry();
  layerCache = tempDirs.make("kiln-oci-pin-layers-");
});

afterAll(async () => {
  await cleanup.run();
  await registry?.stop();
  tempDirs.removeAll();
});

const run = (uri: string, script: string) => runPulled(uri, ["sh", "-c", script]);

describe("oci builder with a base pinned by digest", () => {
  it("reads the pinned digest after the tag moved; pinBase then picks up the moved base", async () => {
    const { baseRef, original, moved } = await pushMovingBase(registry.host, uniqueName("oci-pin-base"), cleanup);
    expect(moved).not.toBe(original);

    const builder = ociBuilder(layerCache);
    const declared = Image.fromBase(baseRef, { registry: registry.host, name: uniqueName("oci-pinned-app"), platform: ["linux/amd64"] }).withEnvVars({
      MODE: "pinned",
    });

    const onOriginal = declared.withBaseDigest(original);
    const first = await builder.buildImage(onOriginal, {});
    expect(first.uri).toBe(onOriginal.uri);
    expect((await run(onOriginal.uri, "test -e /moved && echo moved || echo original")).trim()).toBe("original");

    clearBaseDigestCache();
    const resolved = await build(declared, { builder, pinBase: true, force: true });
    expect(resolved.uri).toBe(declared.withBaseDigest(moved).uri);
    expect((await run(resolved.uri!, "test -e /moved && echo moved || echo original")).trim()).toBe("moved");
  });
});
