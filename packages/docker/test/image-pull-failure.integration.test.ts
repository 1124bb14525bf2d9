// A build whose base or uv image the daemon cannot pull, on the machine's real Docker Engine: the error
// names the image and the option that points Kiln elsewhere (`baseImage`, `uvImage`, `installer: "pip"`),
// and no hint speaks of a log tail when the failing step printed none.
import { rm } from "node:fs/promises";
import { BuildFailedError, Image } from "@kiln/core";
import { DockerCleanup, ensureBusyboxImage, startRegistry, uniqueName, type TestRegistry } from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DockerImageBuilder } from "../src/builder.js";
import { tempTree } from "./helpers.js";

let registry: TestRegistry;
let busybox: string;
const cleanup = new DockerCleanup();
const dirs: string[] = [];
/** Loopback port 1: nothing listens, so the daemon's pull is refused at once. */
const UNREACHABLE = "127.0.0.1:1";

beforeAll(async () => {
  [busybox, registry] = await Promise.all([ensureBusyboxImage(), startRegistry()]);
}, 300_000);

afterAll(async () => {
  await cleanup.run();
  await Promise.all([registry?.stop(), ...dirs.map((d) => rm(d, { recursive: true, force: true }))]);
});

async function buildFailure(image: Image, buildkit: boolean): Promise<BuildFailedError> {
  cleanup.image(image.uri);
  const error = await new DockerImageBuilder({ buildkit }).buildImage(image).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(BuildFailedError.isInstance(error), String(error)).toBe(true);
  return error as BuildFailedError;
}

describe("a base image the daemon cannot pull", () => {
  it('BuildKit, unreachable registry: names the base and points at baseImage (and uvImage / installer: "pip" for pip layers)', async () => {
    const base = `${UNREACHABLE}/python:3.11-slim-bookworm`;
    const image = Image.fromDebianBase({ baseImage: base, name: uniqueName("kiln-pull-base") }).withPipPackages("six");
    const error = await buildFailure(image, true);
    expect(error.message).toContain(`the base image ${base} could not be pulled`);
    expect(error.message).toContain("connection refused");
    expect(error.hint).toContain(base);
    expect(error.hint).toContain("`baseImage`");
    expect(error.hint).toContain('installer: "pip"');
    expect(error.hint).toContain("uvImage");
    expect(error.hint).not.toContain("log tail is above");
    expect(error.details).toMatchObject({ pullFailed: base, logTail: [] });
  }, 300_000);

  it("classic builder, image missing from a reachable registry: names it; no pip layer, so no uv advice", async () => {
    const base = `${registry.host}/kiln-nowhere/base:1`;
    const image = Image.fromBase(base, { name: uniqueName("kiln-pull-missing") }).withEnvVars({ MODE: "prod" });
    const error = await buildFailure(image, false);
    expect(error.message).toContain(`the base image ${base} could not be pulled`);
    expect(error.hint).toContain(base);
    expect(error.hint).toContain("`baseImage`");
    expect(error.hint).not.toContain("uvImage");
    expect(error.hint).not.toContain("log tail is above");
  }, 300_000);
});

describe("a pinned base or uv image the daemon cannot pull (pulled as ref@sha256:…)", () => {
  const digest = `sha256:${"ab".repeat(32)}`;
  it("BuildKit: a pinned base is named as the base, with the baseImage advice", async () => {
    const base = `${registry.host}/kiln-nowhere/base:1`;
    const image = Image.fromBase(base, { name: uniqueName("kiln-pull-pinned") })
      .withBaseDigest(digest)
      .withEnvVars({ MODE: "prod" });
    const error = await buildFailure(image, true);
    expect(error.message).toContain(`the base image ${base} could not be pulled`);
    expect(error.hint).toContain("`baseImage`");
    expect(error.details).toMatchObject({ pullFailed: base });
  }, 300_000);

  it("BuildKit: a pinned uv image is named as the uv image", async () => {
    const uvImage = `${registry.host}/kiln-nowhere/uv:0.8.15`;
    const image = Image.fromBase(busybox, { name: uniqueName("kiln-pull-pinned-uv") })
      .clone({ uvImage })
      .withUvDigest(digest)
      .withPipPackages("six");
    const error = await buildFailure(image, true);
    expect(error.message).toContain(`the uv image ${uvImage} could not be pulled`);
    expect(error.hint).toContain('installer: "pip"');
  }, 300_000);
});

describe("a uv image the daemon cannot pull", () => {
  for (const buildkit of [true, false]) {
    it(`${buildkit ? "BuildKit" : "classic builder"}: names the uv image and points at installer: "pip" and uvImage`, async () => {
      const uvImage = `${registry.host}/kiln-nowhere/uv:0.8.15`;
      const image = Image.fromBase(busybox, { name: uniqueName("kiln-pull-uv") })
        .clone({ uvImage })
        .withPipPackages("six");
      const error = await buildFailure(image, buildkit);
      expect(error.message).toContain(`the uv image ${uvImage} could not be pulled`);
      expect(error.hint).toContain(uvImage);
      expect(error.hint).toContain('installer: "pip"');
      expect(error.hint).toContain("`uvImage`");
      expect(error.hint).not.toContain("log tail is above");
    }, 300_000);
  }
});

describe("a failing step that printed no log", () => {
  it("the hint does not point at a log tail that was never printed", async () => {
    const dir = await tempTree({ Dockerfile: `FROM ${busybox}\nCOPY missing.txt /missing.txt\n`, "present.txt": "x\n" });
    dirs.push(dir);
    const image = Image.fromDockerfile(`${dir}/Dockerfile`, { name: uniqueName("kiln-nolog") });
    const error = await buildFailure(image, true);
    expect(error.details).toMatchObject({ logTail: [] });
    expect(String((error.details as { step?: unknown }).step)).toContain("COPY missing.txt");
    expect(error.hint).not.toContain("log tail is above");
    expect(error.hint).toContain("printed no log");
  }, 300_000);
});
