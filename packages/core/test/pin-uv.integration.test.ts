/**
 * pinBase pins the uv image (`COPY --from=<uvImage>`) as it pins the base, against the real Debian
 * docker-registry on loopback (a tiny image pushed there stands in for the uv image; nothing is pulled
 * from the internet): its digest lands in the rendered Dockerfile, the tag and `kiln explain`; a new
 * digest under the same uv tag changes the tag; one HEAD per uv reference for the run; build() hands
 * the builder the pinned image; and a uv image whose registry cannot tell is a BaseDigestError that
 * names the uv image and how to get past it.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { clearBaseDigestCache } from "../src/baseDigest.js";
import type { ImageBuild } from "../src/builder.js";
import type { BuildEvent } from "../src/events.js";
import { run as runDockerfile } from "../src/cli/commands/dockerfile.js";
import { run as runExplain } from "../src/cli/commands/explain.js";
import type { CommandContext } from "../src/cli/run.js";
import { renderDockerfile } from "../src/dockerfile.js";
import { build, init } from "../src/engine.js";
import { BaseDigestError } from "../src/errors.js";
import { Image } from "../src/image.js";
import { pinBaseImage } from "../src/pinBase.js";
import { uvImageReference } from "../src/pinnedReference.js";
import { startPushFaultProxy, type PushFaultProxy } from "../../test-utils/src/faultsPushProxy.js";
import { freePort, pushTestImage, startRegistry, type TestRegistry } from "../../test-utils/src/registry.js";

let registry: TestRegistry;
let proxy: PushFaultProxy;
let dir: string;
let projectDir: string;
const ENV_KEYS = ["KILN_PIN_BASE", "KILN_LOCK_DIR", "KILN_EXPLAIN_RECORDS", "KILN_HASH_CACHE"] as const;
const savedEnv = Object.fromEntries(ENV_KEYS.map((key) => [key, process.env[key]]));

beforeAll(async () => {
  registry = await startRegistry();
  proxy = await startPushFaultProxy(registry.url);
  dir = mkdtempSync(join(tmpdir(), "kiln-pin-uv-"));
  projectDir = join(dir, "project");
  mkdirSync(projectDir);
  writeFileSync(join(projectDir, "package.json"), JSON.stringify({ name: "pin-uv-test", private: true }));
  process.env.KILN_LOCK_DIR = join(dir, "locks");
  process.env.KILN_EXPLAIN_RECORDS = "0";
  process.env.KILN_HASH_CACHE = "off";
}, 120_000);

afterAll(async () => {
  await proxy?.stop();
  await registry?.stop();
  rmSync(dir, { recursive: true, force: true });
  for (const key of ENV_KEYS) {
    if (savedEnv[key] === undefined) delete process.env[key];
    else process.env[key] = savedEnv[key];
  }
});

afterEach(() => {
  clearBaseDigestCache();
  init({});
  delete process.env.KILN_PIN_BASE;
});

/** A tiny image pushed to the loopback registry as `repository:tag` (a new digest each time). */
const push = (repository: string, tag: string) => pushTestImage(registry, repository, tag, "oci");

/** The `COPY --from=… /uv /uvx /usr/local/bin/` line of a rendered Dockerfile. */
const uvCopyLine = (dockerfile: string) => dockerfile.split("\n").find((line) => line.startsWith("COPY --from=") && line.endsWith(" /uv /uvx /usr/local/bin/"));

class Collect extends Writable {
  text = "";
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString();
    callback();
  }
}

async function kiln(command: (args: string[], context: CommandContext) => Promise<number>, args: string[]) {
  const stdout = new Collect();
  const stderr = new Collect();
  const context = { signal: new AbortController().signal, stdout, stderr, interactive: false, json: args.includes("--json") } as unknown as CommandContext;
  const code = await command(args, context);
  return { code, stdout: stdout.text, stderr: stderr.text };
}

describe("pinBase: the uv image is pinned by digest", () => {
  it("its digest lands in COPY --from and the tag; a new digest under the same uv tag changes the tag (pip images need none)", async () => {
    const baseRef = `${registry.host}/pin-uv/python:3.11`;
    const uvRef = `${registry.host}/pin-uv/uv:0.8`;
    const base = await push("pin-uv/python", "3.11");
    const firstUv = await push("pin-uv/uv", "0.8");
    const declared = Image.fromDebianBase({ baseImage: baseRef, uvImage: uvRef, pinBase: true }).withPipPackages("six");

    const before = await pinBaseImage(declared, { projectDir });
    expect(before.spec.uvDigest).toBe(firstUv.digest);
    expect((before.spec.base as { digest?: string }).digest).toBe(base.digest);
    expect(uvCopyLine(renderDockerfile(before))).toBe(`COPY --from=${uvRef}@${firstUv.digest} /uv /uvx /usr/local/bin/`);
    expect(before.tag).toBe(declared.withBaseDigest(base.digest).withUvDigest(firstUv.digest).tag);
    expect(before.tag).not.toBe(declared.withBaseDigest(base.digest).tag);

    const secondUv = await push("pin-uv/uv", "0.8");
    expect(secondUv.digest).not.toBe(firstUv.digest);
    clearBaseDigestCache(); // a new run
    const after = await pinBaseImage(declared, { projectDir });
    expect(after.spec.uvDigest).toBe(secondUv.digest);
    expect((after.spec.base as { digest?: string }).digest).toBe(base.digest);
    expect(after.tag).not.toBe(before.tag);
    expect(uvCopyLine(renderDockerfile(after))).toBe(`COPY --from=${uvImageReference(after.spec)} /uv /uvx /usr/local/bin/`);
    expect(uvImageReference(after.spec)).toBe(`${uvRef}@${secondUv.digest}`);

    // Unpinned, the uv image is neither looked up nor in the tag.
    const unpinned = await pinBaseImage(declared.clone({ pinBase: false }), { projectDir });
    expect(unpinned.spec.uvDigest).toBeUndefined();
    expect(unpinned.tag).toBe(declared.clone({ pinBase: false }).tag);

    // An image that installs with pip copies no uv: its uv image is not looked up (nobody serves this one).
    const port = await freePort();
    const pip = Image.fromDebianBase({ baseImage: baseRef, uvImage: `127.0.0.1:${port}/uv:1`, installer: "pip", pinBase: true }).withPipPackages("six");
    const pipPinned = await pinBaseImage(pip, { projectDir });
    expect(pipPinned.spec.uvDigest).toBeUndefined();
    expect((pipPinned.spec.base as { digest?: string }).digest).toBe(base.digest);
    expect(uvCopyLine(renderDockerfile(pipPinned))).toBeUndefined();
  });

  it("one HEAD per uv reference for the whole run, however many images copy it", async () => {
    await pushTestImage({ url: proxy.url, authorizationFor: () => undefined }, "pin-uv/shared-uv", "1", "oci");
    const baseDigest = (await push("pin-uv/shared-base", "1")).digest;
    const uvRef = `${proxy.host}/pin-uv/shared-uv:1`;
    const before = proxy.requests.length;
    const images = ["a", "b", "c"].map((name) =>
      Image.fromBase(`${registry.host}/pin-uv/shared-base@${baseDigest}`, { name: `pin-uv/${name}`, pinBase: true })
        .clone({ uvImage: uvRef })
        .withPipPackages(name === "a" ? "six" : "rich"),
    );
    const pinned = await Promise.all(images.map((image) => pinBaseImage(image, { projectDir })));
    await pinBaseImage(images[0]!.withEnvVars({ MORE: "1" }), { projectDir });
    const heads = proxy.requests.slice(before).filter((r) => r.method === "HEAD" && r.path.includes("/pin-uv/shared-uv/manifests/"));
    expect(heads.length).toBe(1);
    expect(new Set(pinned.map((image) => image.spec.uvDigest)).size).toBe(1);
    expect(pinned[0]!.spec.uvDigest).toMatch(/^sha256:/);
  });

  it("build() hands the builder the pinned image: uv by digest in its Dockerfile, the digest in its tag", async () => {
    const baseRef = `${registry.host}/pin-uv/engine-base:1`;
    const uvRef = `${registry.host}/pin-uv/engine-uv:1`;
    const base = await push("pin-uv/engine-base", "1");
    const uv = await push("pin-uv/engine-uv", "1");
    const seen: Image[] = [];
    const builder = { buildImage: async (image: Image): Promise<ImageBuild> => (seen.push(image), { uri: image.uri }) };
    const declared = Image.fromDebianBase({ baseImage: baseRef, uvImage: uvRef, name: "pin-uv/engine-app" })
      .withPipPackages("six")
      .withEnvVars({ RUN: `${Date.now()}` });
    const result = await build(declared, { builder, pinBase: true, projectDir });
    expect(result.uri).toBe(declared.withBaseDigest(base.digest).withUvDigest(uv.digest).uri);
    expect(seen.length).toBe(1);
    expect(uvCopyLine(renderDockerfile(seen[0]!))).toBe(`COPY --from=${uvRef}@${uv.digest} /uv /uvx /usr/local/bin/`);
  });

  it("a base pinned by hand, only the uv image left to pin: no base.pinned event for the base this build did not pin", async () => {
    const baseRef = `${registry.host}/pin-uv/hand-base:1`;
    const uvRef = `${registry.host}/pin-uv/hand-uv:1`;
    const base = await push("pin-uv/hand-base", "1");
    const uv = await push("pin-uv/hand-uv", "1");
    const builder = { buildImage: async (image: Image): Promise<ImageBuild> => ({ uri: image.uri }) };
    const events: BuildEvent[] = [];
    const declared = Image.fromDebianBase({ baseImage: baseRef, uvImage: uvRef, name: "pin-uv/hand-app" })
      .withPipPackages("six")
      .withEnvVars({ RUN: `${Date.now()}` })
      .withBaseDigest(base.digest);
    const result = await build(declared, { builder, pinBase: true, projectDir, onEvent: (event) => events.push(event) });
    expect(result.uri).toBe(declared.withUvDigest(uv.digest).uri);
    expect(events.filter((event) => event.type === "base.pinned")).toEqual([]);
  });

  it("an image built on a Kiln image: the uv image of the image above is pinned too", async () => {
    const base = await push("pin-uv/chain-base", "1");
    const uv = await push("pin-uv/chain-uv", "1");
    const uvRef = `${registry.host}/pin-uv/chain-uv:1`;
    const bottom = Image.fromBase(`${registry.host}/pin-uv/chain-base:1`, { name: "pin-uv/bottom" }).withEnvVars({ L: "0" });
    const top = Image.fromBase(bottom, { name: "pin-uv/top" }).clone({ uvImage: uvRef }).withPipPackages("six");
    const pinned = await pinBaseImage(top, { projectDir, pinBase: true });
    expect((pinned.baseImage!.spec.base as { digest?: string }).digest).toBe(base.digest);
    expect(pinned.spec.uvDigest).toBe(uv.digest);
    expect(pinned.tag).toBe(
      Image.fromBase(bottom.withBaseDigest(base.digest), { name: "pin-uv/top" }).clone({ uvImage: uvRef }).withPipPackages("six").withUvDigest(uv.digest).tag,
    );
  });

  it("kiln dockerfile and kiln explain --pin-base show the uv image's digest", async () => {
    const uvRef = `${registry.host}/pin-uv/cli-uv:1`;
    const baseRef = `${registry.host}/pin-uv/cli-base:1`;
    await push("pin-uv/cli-base", "1");
    const uv = await push("pin-uv/cli-uv", "1");
    const image = Image.fromDebianBase({ baseImage: baseRef, uvImage: uvRef, name: "pin-uv/cli" }).withPipPackages("six");
    const spec = join(dir, "uv-images.mjs");
    writeFileSync(spec, `export const api = { [Symbol.for("kiln.image")]: true, toJSON: () => (${JSON.stringify(image.toJSON())}) };\n`);
    const printed = await kiln(runDockerfile, [spec, "--pin-base", "--project", projectDir]);
    expect(printed.code, printed.stderr).toBe(0);
    expect(uvCopyLine(printed.stdout)).toBe(`COPY --from=${uvRef}@${uv.digest} /uv /uvx /usr/local/bin/`);
    const explained = await kiln(runExplain, [spec, "--pin-base", "--project", projectDir, "--json"]);
    expect(explained.code, explained.stderr).toBe(0);
    const record = JSON.parse(explained.stdout.trim());
    const installer = record.explanation.inputs.find((input: { label: string }) => input.label === "installer");
    expect(installer.value).toContain(`uvDigest=${JSON.stringify(uv.digest)}`);
    expect(record.tag).toBe((await pinBaseImage(image, { projectDir, pinBase: true })).tag);
  });
});

describe("pinBase: a uv image whose registry cannot tell is an error", () => {
  it("an unreachable uv registry is a BaseDigestError naming the uv image, how to fix it; build() stops before the builder", async () => {
    const baseDigest = (await push("pin-uv/offline-base", "1")).digest;
    const port = await freePort(); // nothing listens there
    const uvRef = `127.0.0.1:${port}/tools/uv:0.8`;
    const image = Image.fromBase(`${registry.host}/pin-uv/offline-base@${baseDigest}`, { name: "pin-uv/offline" })
      .clone({ uvImage: uvRef })
      .withPipPackages("six")
      .withEnvVars({ RUN: `${Date.now()}` });
    const error = await pinBaseImage(image, { projectDir, pinBase: true }).catch((e: unknown) => e);
    expect(BaseDigestError.isInstance(error)).toBe(true);
    expect((error as BaseDigestError).message).toContain(`the uv image ${uvRef}`);
    expect((error as BaseDigestError).hint).toContain(`127.0.0.1:${port}`);
    expect((error as BaseDigestError).hint).toContain("uvImage");
    expect((error as BaseDigestError).hint).toContain('installer: "pip"');
    expect((error as BaseDigestError).details).toMatchObject({ uvImage: uvRef });

    const calls: string[] = [];
    const builder = { buildImage: async (built: Image): Promise<ImageBuild> => (calls.push(built.uri), { uri: built.uri }) };
    await expect(build(image, { builder, pinBase: true, projectDir })).rejects.toMatchObject({ code: "KILN_BASE_DIGEST" });
    expect(calls).toEqual([]);
  });

  it("a uv image its registry does not hold is a BaseDigestError naming it", async () => {
    const baseDigest = (await push("pin-uv/absent-base", "1")).digest;
    const uvRef = `${registry.host}/pin-uv/absent-uv:1`;
    const image = Image.fromBase(`${registry.host}/pin-uv/absent-base@${baseDigest}`, { pinBase: true }).clone({ uvImage: uvRef }).withPipPackages("six");
    const error = await pinBaseImage(image, { projectDir }).catch((e: unknown) => e);
    expect(BaseDigestError.isInstance(error)).toBe(true);
    expect((error as Error).message).toBe(`pinBase: the uv image ${uvRef} is not in its registry ${registry.host}`);
  });
});
