/**
 * pinBase (pinBase.ts, baseDigest.ts) against the real Debian docker-registry on loopback: a base tag
 * moved to a new digest changes the pinned tag and not the unpinned one; the digest is in the rendered
 * FROM and in the explanation; one HEAD per reference per run; the index digest for a multi-platform
 * base; an unreachable registry is a BaseDigestError (and build() fails with it before any builder runs);
 * and which setting wins (image > build() > init > KILN_PIN_BASE > config).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { baseReference, clearBaseDigestCache, resolveBaseDigest } from "../src/baseDigest.js";
import type { BuildImageOptions, ImageBuild } from "../src/builder.js";
import { renderDockerfile } from "../src/dockerfile.js";
import { buildAll } from "../src/buildAll.js";
import { build, init } from "../src/engine.js";
import { BaseDigestError } from "../src/errors.js";
import type { BuildEvent } from "../src/events.js";
import { Image } from "../src/image.js";
import { loadConfig } from "../src/config.js";
import { needsBasePin, pinBaseImage, selectPinBase } from "../src/pinBase.js";
import { startPushFaultProxy, type PushFaultProxy } from "../../test-utils/src/faultsPushProxy.js";
import { freePort, pushTestImage, startRegistry, type TestRegistry } from "../../test-utils/src/registry.js";

let registry: TestRegistry;
let proxy: PushFaultProxy;
let projectDir: string;
let lockDir: string;
const savedEnv = { KILN_PIN_BASE: process.env.KILN_PIN_BASE, KILN_LOCK_DIR: process.env.KILN_LOCK_DIR };

beforeAll(async () => {
  registry = await startRegistry();
  proxy = await startPushFaultProxy(registry.url);
  projectDir = mkdtempSync(join(tmpdir(), "kiln-pin-project-"));
  writeFileSync(join(projectDir, "package.json"), JSON.stringify({ name: "pin-test", private: true }));
  lockDir = mkdtempSync(join(tmpdir(), "kiln-pin-locks-"));
  process.env.KILN_LOCK_DIR = lockDir;
}, 120_000);

afterAll(async () => {
  await proxy?.stop();
  await registry?.stop();
  rmSync(projectDir, { recursive: true, force: true });
  rmSync(lockDir, { recursive: true, force: true });
  for (const [key, value] of Object.entries(savedEnv)) {
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
});

afterEach(() => {
  clearBaseDigestCache();
  init({});
  delete process.env.KILN_PIN_BASE;
});

const pushBase = (repository: string, tag: string, shape: "oci" | "oci-index-with-attestation" = "oci") => pushTestImage(registry, repository, tag, shape);

describe("pinBase: the base's digest is part of the tag", () => {
  it("a base moved to a new digest changes the pinned tag; the unpinned tag stays", async () => {
    const ref = `${registry.host}/pin/base:1`;
    const first = await pushBase("pin/base", "1");
    const declared = Image.fromBase(ref, { pinBase: true, name: "pin/app" }).withEnvVars({ A: "1" });
    const unpinnedTag = declared.tag;

    const pinnedBefore = await pinBaseImage(declared, { projectDir });
    expect(pinnedBefore.spec.base).toMatchObject({ ref, digest: first.digest });
    expect(pinnedBefore.tag).not.toBe(unpinnedTag);

    const second = await pushBase("pin/base", "1");
    expect(second.digest).not.toBe(first.digest);
    clearBaseDigestCache(); // a new run
    const pinnedAfter = await pinBaseImage(declared, { projectDir });
    expect(pinnedAfter.spec.base).toMatchObject({ digest: second.digest });
    expect(pinnedAfter.tag).not.toBe(pinnedBefore.tag);

    const unpinned = Image.fromBase(ref, { name: "pin/app" }).withEnvVars({ A: "1" });
    expect(unpinned.tag).toBe(unpinnedTag);
    expect((await pinBaseImage(unpinned, { projectDir })).tag).toBe(unpinnedTag);
  });

  it("renders FROM ref@digest, and explain shows the digest", async () => {
    const ref = `${registry.host}/pin/render:3.11`;
    const pushed = await pushBase("pin/render", "3.11");
    // installer "pip": no uv image to pin as well (that is pin-uv.integration.test.ts).
    const pinned = await pinBaseImage(Image.fromDebianBase({ baseImage: ref, pinBase: true, installer: "pip" }).withPipPackages("six"), { projectDir });
    const dockerfile = renderDockerfile(pinned);
    expect(dockerfile.split("\n")[0]).toBe(`FROM ${ref}@${pushed.digest}`);
    expect(renderDockerfile(Image.fromDebianBase({ baseImage: ref }).withPipPackages("six")).split("\n")[0]).toBe(`FROM ${ref}`);
    expect(baseReference(pinned.spec.base as Extract<typeof pinned.spec.base, { kind: "image" }>)).toBe(`${ref}@${pushed.digest}`);
    const base = pinned.explain().inputs.find((input) => input.label === "base")!;
    expect(base.value).toContain(`digest=${JSON.stringify(pushed.digest)}`);
    // The spec travels to a remote builder with its digest.
    expect(Image.fromJSON(JSON.parse(JSON.stringify(pinned.toJSON()))).tag).toBe(pinned.tag);
  });

  it("a multi-platform base is pinned to its index (manifest list) digest", async () => {
    const pushed = await pushBase("pin/multi", "1", "oci-index-with-attestation");
    const pinned = await pinBaseImage(
      Image.fromBase(`${registry.host}/pin/multi:1`, { pinBase: true, platform: ["linux/amd64", "linux/arm64"] }).withEnvVars({ A: "1" }),
      { projectDir },
    );
    expect(pushed.children?.length).toBe(2);
    expect((pinned.spec.base as { digest?: string }).digest).toBe(pushed.digest);
  });

  it("one HEAD per reference for the whole run, however many images use it", async () => {
    await pushTestImage({ url: proxy.url, authorizationFor: () => undefined }, "pin/shared", "1", "oci");
    const ref = `${proxy.host}/pin/shared:1`;
    const before = proxy.requests.length;
    const images = ["a", "b", "c"].map((name) => Image.fromBase(ref, { pinBase: true, name }).withEnvVars({ N: name }));
    const pinned = await Promise.all(images.map((image) => pinBaseImage(image, { projectDir })));
    await pinBaseImage(images[0]!.withEnvVars({ MORE: "1" }), { projectDir });
    const heads = proxy.requests.slice(before).filter((r) => r.method === "HEAD" && r.path.includes("/pin/shared/manifests/"));
    expect(heads.length).toBe(1);
    expect(new Set(pinned.map((image) => (image.spec.base as { digest?: string }).digest)).size).toBe(1);
  });

  it("an image built on a Kiln image: the chain is pinned from the bottom, so a moved base changes every tag above it", async () => {
    const first = await pushBase("pin/chain", "1");
    const bottom = Image.fromBase(`${registry.host}/pin/chain:1`, { pinBase: true, name: "pin/bottom" }).withEnvVars({ L: "0" });
    const top = Image.fromBase(bottom, { name: "pin/top" }).withEnvVars({ L: "1" });
    const pinnedBefore = await pinBaseImage(top, { projectDir });
    expect((pinnedBefore.baseImage!.spec.base as { digest?: string }).digest).toBe(first.digest);
    expect(pinnedBefore.spec.base.kind === "image" && pinnedBefore.spec.base.ref).toBe(pinnedBefore.baseImage!.uri);
    await pushBase("pin/chain", "1");
    clearBaseDigestCache();
    const pinnedAfter = await pinBaseImage(top, { projectDir });
    expect(pinnedAfter.baseImage!.tag).not.toBe(pinnedBefore.baseImage!.tag);
    expect(pinnedAfter.tag).not.toBe(pinnedBefore.tag);
    expect(top.tag).toBe(Image.fromBase(bottom, { name: "pin/top" }).withEnvVars({ L: "1" }).tag); // unpinned: as declared
  });

  it("a pinned fromBase image without layers is used as is: its URI is ref@digest", async () => {
    const pushed = await pushBase("pin/asis", "1");
    const ref = `${registry.host}/pin/asis:1`;
    const pinned = await pinBaseImage(Image.fromBase(ref, { pinBase: true }), { projectDir });
    expect(pinned.needsBuild).toBe(false);
    expect(pinned.uri).toBe(`${ref}@${pushed.digest}`);
    expect(Image.fromBase(ref).uri).toBe(ref);
  });

  it("a reference that already names a digest is pinned as written (no lookup)", async () => {
    const pushed = await pushBase("pin/bydigest", "1");
    const image = Image.fromBase(`${registry.host}/pin/bydigest@${pushed.digest}`, { pinBase: true }).withEnvVars({ A: "1" });
    expect(needsBasePin(image, true)).toBe(false);
    expect((await pinBaseImage(image, { projectDir })).tag).toBe(image.tag);
  });
});

describe("pinBase: a shared lookup outlives the caller that started it", () => {
  it("the first caller cancelling does not fail the other callers waiting on the same base", async () => {
    const digest = `sha256:${"ab".repeat(32)}`;
    let heads = 0;
    // A registry slow to answer the HEAD, so the lookup is still running when the first caller cancels.
    const server = http.createServer((request, response) => {
      if (request.method === "HEAD") heads++;
      setTimeout(() => {
        response.writeHead(200, { "docker-content-digest": digest, "content-type": "application/vnd.oci.image.manifest.v1+json", "content-length": "2" });
        response.end();
      }, 300);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const ref = `127.0.0.1:${(server.address() as AddressInfo).port}/pin/slow:1`;
      const first = new AbortController();
      const cancelled = resolveBaseDigest(ref, { signal: first.signal });
      const others = [resolveBaseDigest(ref), resolveBaseDigest(ref, { signal: new AbortController().signal })];
      setTimeout(() => first.abort(new Error("first caller gave up")), 50);
      await expect(cancelled).rejects.toThrow();
      expect(await Promise.all(others)).toEqual([digest, digest]);
      expect(heads).toBe(1);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  }, 20_000);
});

describe("pinBase: a base registry that cannot tell is an error", () => {
  it("an unreachable registry is a BaseDigestError naming the base and registry", async () => {
    const port = await freePort(); // nothing listens there
    const ref = `127.0.0.1:${port}/pin/gone:1`;
    const error = await pinBaseImage(Image.fromBase(ref, { pinBase: true }).withEnvVars({ A: "1" }), { projectDir }).catch((e: unknown) => e);
    expect(BaseDigestError.isInstance(error)).toBe(true);
    expect((error as BaseDigestError).message).toContain(ref);
    expect((error as BaseDigestError).hint).toContain(`127.0.0.1:${port}`);
  });

  it("a base the registry does not hold is a BaseDigestError", async () => {
    const error = await pinBaseImage(Image.fromBase(`${registry.host}/pin/absent:1`, { pinBase: true }).withEnvVars({ A: "1" }), { projectDir }).catch(
      (e: unknown) => e,
    );
    expect(BaseDigestError.isInstance(error)).toBe(true);
    expect((error as Error).message).toContain("is not in its registry");
  });

  it("build() with pinBase fails with it before any builder runs; unpinned it builds", async () => {
    const port = await freePort();
    const calls: string[] = [];
    const builder = { buildImage: async (image: Image, _o: BuildImageOptions): Promise<ImageBuild> => (calls.push(image.uri), { uri: image.uri }) };
    const image = Image.fromBase(`127.0.0.1:${port}/pin/gone:1`, { name: "pin/offline" }).withEnvVars({ A: `${Date.now()}` });
    await expect(build(image, { builder, pinBase: true, projectDir })).rejects.toMatchObject({ code: "KILN_BASE_DIGEST" });
    expect(calls).toEqual([]);
    await build(image, { builder, projectDir });
    expect(calls).toEqual([image.uri]);
  });
});

describe("pinBase in build()", () => {
  it("the builder gets the pinned image: its tag has the digest and its Dockerfile FROM ref@digest", async () => {
    const ref = `${registry.host}/pin/engine:1`;
    const pushed = await pushBase("pin/engine", "1");
    const seen: Image[] = [];
    const builder = { buildImage: async (image: Image): Promise<ImageBuild> => (seen.push(image), { uri: image.uri }) };
    const events: BuildEvent[] = [];
    const declared = Image.fromBase(ref, { name: "pin/engine-app" }).withEnvVars({ RUN: `${Date.now()}` });
    const result = await build(declared, { builder, pinBase: true, projectDir, onEvent: (e) => events.push(e) });
    const expected = declared.withBaseDigest(pushed.digest);
    expect(result.uri).toBe(expected.uri);
    expect(result.uri).not.toBe(declared.uri);
    expect(seen.length).toBe(1);
    expect(renderDockerfile(seen[0]!).split("\n")[0]).toBe(`FROM ${ref}@${pushed.digest}`);
    expect(events.find((e) => e.type === "base.pinned")).toMatchObject({ base: ref, digest: pushed.digest, image: expected.uri });
  });

  it("buildAll: the image above a base is hashed from and built on the base as built, even if its tag moves during that build", async () => {
    const ref = `${registry.host}/pin/moving:1`;
    const first = await pushBase("pin/moving", "1");
    const run = `${Date.now()}`;
    const base = Image.fromBase(ref, { name: "pin/moving-base" }).withEnvVars({ RUN: run });
    const top = Image.fromBase(base, { name: "pin/moving-top" }).withEnvVars({ RUN: run });
    const built: Image[] = [];
    const store = new Set<string>();
    const builder = {
      getCheckers: () => [{ imageExists: async (repository: string, tag: string) => (store.has(`${repository}:${tag}`) ? `${repository}:${tag}` : null) }],
      buildImage: async (image: Image): Promise<ImageBuild> => {
        if (image.name === base.name) {
          // Upstream moves while the base builds, and the digest cache has expired meanwhile (a long build).
          await pushBase("pin/moving", "1");
          clearBaseDigestCache();
        }
        built.push(image);
        store.add(image.uri);
        return { uri: image.uri };
      },
    };
    const results = await buildAll([{ name: "top", image: top }], { builder, pinBase: true, projectDir });
    expect(results.map((r) => [r.name, r.action, r.error])).toEqual([
      ["top", "built", undefined],
      [base.withBaseDigest(first.digest).uri, "built", undefined],
    ]);
    const [builtBase, builtTop] = built;
    expect((builtBase!.spec.base as { digest?: string }).digest).toBe(first.digest);
    expect(builtTop!.baseImage!.tag).toBe(builtBase!.tag);
    expect(builtTop!.spec.base.kind === "image" && builtTop!.spec.base.ref).toBe(builtBase!.uri);
    expect(results[0]!.uri).toBe(Image.fromBase(base.withBaseDigest(first.digest), { name: "pin/moving-top" }).withEnvVars({ RUN: run }).uri);
  });

  it("precedence: the image's own choice > build() > init > KILN_PIN_BASE > config", async () => {
    const config = { ...loadConfig(projectDir), pinBase: true };
    expect(selectPinBase(undefined, loadConfig(projectDir))).toBe(false);
    expect(selectPinBase(undefined, config)).toBe(true);
    process.env.KILN_PIN_BASE = "0";
    expect(selectPinBase(undefined, config)).toBe(false);
    init({ pinBase: true });
    expect(selectPinBase(undefined, config)).toBe(true);
    expect(selectPinBase(false, config)).toBe(false);
    process.env.KILN_PIN_BASE = "maybe";
    init({});
    expect(() => selectPinBase(undefined, config)).toThrow(/KILN_PIN_BASE/);
    const optedOut = Image.fromBase("busybox:1.36", { pinBase: false }).withEnvVars({ A: "1" });
    const optedIn = Image.fromBase("busybox:1.36", { pinBase: true }).withEnvVars({ A: "1" });
    expect(needsBasePin(optedOut, true)).toBe(false);
    expect(needsBasePin(optedIn, false)).toBe(true);
    expect(needsBasePin(optedIn.clone({ pinBase: null }), false)).toBe(false);
    // A config file's "pinBase" is read and validated.
    writeFileSync(join(projectDir, "kiln.config.json"), JSON.stringify({ pinBase: true }));
    try {
      expect(loadConfig(projectDir).pinBase).toBe(true);
      writeFileSync(join(projectDir, "kiln.config.json"), JSON.stringify({ pinBase: "yes" }));
      expect(() => loadConfig(projectDir)).toThrow(/pinBase/);
    } finally {
      rmSync(join(projectDir, "kiln.config.json"), { force: true });
    }
    await expect(build(optedIn, { pinBase: "yes" as unknown as boolean, dryRun: true, projectDir })).rejects.toMatchObject({ code: "KILN_CONFIG" });
  });
});
