/**
 * Builder selection by `canBuild`: with no builder configured the engine takes the first installed
 * builder, in BUILDER_PREFERENCE order (`oci` before `docker`), that can build the image; a builder
 * that is configured (by option, init, env or config) and cannot build it fails with its reason.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import type { CanBuildAnswer, ImageBuild, ImageBuilder } from "../src/builder.js";
import { build, init } from "../src/engine.js";
import { CannotBuildError } from "../src/errors.js";
import { Image } from "../src/image.js";
import { BUILDER_PREFERENCE, registerImageBuilder, unregisterImageBuilder } from "../src/selection.js";

const scratch = mkdtempSync(join(tmpdir(), "kiln-selection-"));
const projectDir = join(scratch, "project");
mkdirSync(projectDir);
writeFileSync(join(projectDir, "package.json"), JSON.stringify({ name: "selection-fixture", private: true }));
process.env.KILN_LOCK_DIR = join(scratch, "locks");
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Builds nothing; records calls; refuses images with commands when `copyOnly`. */
class FakeBuilder implements ImageBuilder {
  readonly calls: string[] = [];
  constructor(private readonly copyOnly: boolean) {}
  canBuild(image: Image): CanBuildAnswer {
    if (!this.copyOnly) return { ok: true };
    const index = image.spec.layers.findIndex((l) => l.kind === "commands");
    return index < 0 ? { ok: true } : { ok: false, reason: `layers[${index}] (withCommands) needs a step run inside the image` };
  }
  async buildImage(image: Image): Promise<ImageBuild> {
    this.calls.push(image.uri);
    return { uri: image.uri, digest: `sha256:${"0".repeat(64)}` };
  }
}

let oci: FakeBuilder;
let docker: FakeBuilder;
let counter = 0;
const copyOnly = () => Image.fromBase("localhost:5000/base:1", { registry: "localhost:5000", name: "sel" }).withEnvVars({ N: `${process.pid}-${++counter}` });
const withCommands = () => copyOnly().withCommands("echo hi");

beforeEach(() => {
  init({ projectDir });
  delete process.env.KILN_IMAGE_BUILDER;
  oci = new FakeBuilder(true);
  docker = new FakeBuilder(false);
  // Registered in the "wrong" order on purpose: the preference order decides, not registration.
  registerImageBuilder("docker", docker);
  registerImageBuilder("oci", oci);
});
afterEach(() => {
  unregisterImageBuilder("docker");
  unregisterImageBuilder("oci");
  init({});
});

describe("builder selection by canBuild", () => {
  it("documents oci before docker", () => {
    expect(BUILDER_PREFERENCE.indexOf("oci")).toBeLessThan(BUILDER_PREFERENCE.indexOf("docker"));
  });

  it("no builder configured: a copy-only image goes to oci, one with a RUN step to docker", async () => {
    const first = await build(copyOnly(), { force: true });
    expect(first).toMatchObject({ outcome: "built", builder: "oci" });
    const second = await build(withCommands(), { force: true });
    expect(second).toMatchObject({ outcome: "built", builder: "docker" });
    expect(oci.calls).toHaveLength(1);
    expect(docker.calls).toHaveLength(1);
  });

  it("a dry run reports the builder that would build each image", async () => {
    expect((await build(copyOnly(), { dryRun: true })).builder).toBe("oci");
    expect((await build(withCommands(), { dryRun: true })).builder).toBe("docker");
  });

  it("a configured builder that cannot build the image fails with its reason, naming the layer (option, init, env)", async () => {
    const byOption = await build(withCommands(), { builder: "oci", force: true }).catch((e: unknown) => e);
    expect(CannotBuildError.isInstance(byOption)).toBe(true);
    expect((byOption as Error).message).toMatch(/oci cannot build .*layers\[1\] \(withCommands\)/);
    init({ projectDir, imageBuilder: "oci" });
    expect(CannotBuildError.isInstance(await build(withCommands(), { force: true }).catch((e: unknown) => e))).toBe(true);
    init({ projectDir });
    process.env.KILN_IMAGE_BUILDER = "oci";
    try {
      expect(CannotBuildError.isInstance(await build(withCommands(), { force: true }).catch((e: unknown) => e))).toBe(true);
    } finally {
      delete process.env.KILN_IMAGE_BUILDER;
    }
    expect(oci.calls).toHaveLength(0);
  });

  it("when no installed builder can build it: CannotBuildError with every builder's reason", async () => {
    unregisterImageBuilder("docker");
    registerImageBuilder("docker", { canBuild: () => ({ ok: false, reason: "no Docker Engine" }), buildImage: async () => ({ uri: null }) } as ImageBuilder);
    const error = await build(withCommands(), { force: true }).catch((e: unknown) => e);
    expect(CannotBuildError.isInstance(error)).toBe(true);
    expect((error as Error).message).toContain("oci: layers[1]");
    expect((error as Error).message).toContain("docker: no Docker Engine");
  });
});
