/**
 * pinBase with the daemonless oci builder: the base is read by its pinned digest (`ref@sha256:…`), so an
 * image pinned before the base tag moved is still built on the original base; build({ pinBase }) then
 * resolves the moved tag. `docker run` of what was pushed tells which base it has (real registry and
 * daemon; the bases are made locally with docker).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Image, RegistryClient, build, clearBaseDigestCache } from "@kiln/core";
import { DockerCleanup, docker, ensureBusyboxImage, startRegistry, uniqueName, type TestRegistry } from "@kiln/test-utils";
import { OciImageBuilder } from "../src/index.js";

let registry: TestRegistry;
let layerCache: string;
const cleanup = new DockerCleanup();

beforeAll(async () => {
  await ensureBusyboxImage();
  registry = await startRegistry();
  layerCache = mkdtempSync(join(tmpdir(), "kiln-oci-pin-layers-"));
});

afterAll(async () => {
  await cleanup.run();
  await registry?.stop();
  rmSync(layerCache, { recursive: true, force: true });
});

const client = () => new RegistryClient({ useDockerConfig: false });
const run = async (uri: string, script: string) => {
  cleanup.image(uri);
  await docker(["pull", uri], { timeoutMs: 120_000 });
  return docker(["run", "--rm", "--network", "none", uri, "sh", "-c", script], { timeoutMs: 120_000 });
};

describe("oci builder with a base pinned by digest", () => {
  it("reads the pinned digest after the tag moved; pinBase then picks up the moved base", async () => {
    const busybox = await ensureBusyboxImage();
    const baseRef = `${registry.host}/${uniqueName("oci-pin-base")}:1`;
    cleanup.image(baseRef);
    await docker(["tag", busybox, baseRef]);
    await docker(["push", baseRef], { timeoutMs: 120_000 });
    const original = (await client().headManifest(baseRef))!.digest;
    await docker(["build", "-t", baseRef, "-"], { input: `FROM ${busybox}\nRUN touch /moved\n`, timeoutMs: 120_000 });
    await docker(["push", baseRef], { timeoutMs: 120_000 });
    const moved = (await client().headManifest(baseRef))!.digest;
    expect(moved).not.toBe(original);

    const builder = new OciImageBuilder({ client: client(), layerCache, env: { ...process.env, SOURCE_DATE_EPOCH: "" } });
    const declared = Image.fromBase(baseRef, { registry: registry.host, name: uniqueName("oci-pinned-app"), platform: ["linux/amd64"] }).withEnvVars({ MODE: "pinned" });

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
