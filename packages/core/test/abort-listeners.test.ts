// Many images under one AbortSignal (the CLI's Ctrl-C signal shared by every image of `kiln build`):
// no MaxListenersExceededWarning, and the shared signal keeps no abort listener after the run. The
// builder and checkers are in-process (their waits really listen on the signal they are given); the
// registry paths use a loopback server answering 503, a port refusing connections, and the real
// docker-registry from test-utils (pinBase lookups).
import { createHash } from "node:crypto";
import { defaultMaxListeners, getEventListeners } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { clearBaseDigestCache } from "../src/baseDigest.js";
import type { BuildImageOptions, ImageBuild, ImageBuilder, ImageCheckerLike, ImageCheckOptions } from "../src/builder.js";
import { buildAll, type BuildAllResult } from "../src/buildAll.js";
import { build, init } from "../src/engine.js";
import type { BuildEvent } from "../src/events.js";
import { Image } from "../src/image.js";
import { checkImage } from "../src/registry/check.js";
import { RegistryClient } from "../src/registry/client.js";
import { sleep } from "../src/registry/retry.js";
import { promoteImage } from "../src/promotion/copy.js";
import { freePort, pushTestImage, putTestManifest, startRegistry, type TestRegistry, uploadBlob } from "../../test-utils/src/registry.js";

const IMAGES = 24;
const scratch = mkdtempSync(join(tmpdir(), "kiln-abort-listeners-"));
const savedLockDir = process.env.KILN_LOCK_DIR;
process.env.KILN_LOCK_DIR = join(scratch, "locks");
afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
  if (savedLockDir === undefined) delete process.env.KILN_LOCK_DIR;
  else process.env.KILN_LOCK_DIR = savedLockDir;
});
beforeEach(() => init({ projectDir: scratch }));

let id = 0;
const unique = () => `${process.pid}-${++id}-${Date.now()}`;

/** Every process warning while a test runs (Node emits MaxListenersExceededWarning through it). */
let warnings: Error[] = [];
const onWarning = (warning: Error) => warnings.push(warning);
beforeEach(() => {
  warnings = [];
  process.on("warning", onWarning);
});
afterEach(() => {
  process.off("warning", onWarning);
});
const listenerWarnings = () => warnings.filter((w) => w.name === "MaxListenersExceededWarning").map((w) => w.message);

/** Builds after a short wait on its signal; its checker is the given one, or one that waits on its signal and answers absent. */
class WaitingBuilder implements ImageBuilder {
  built = 0;
  constructor(private readonly checker?: ImageCheckerLike) {}
  getCheckers(): ImageCheckerLike[] {
    return [
      this.checker ?? {
        imageExists: async (_repository: string, _tag: string, _platforms?: readonly string[], options?: ImageCheckOptions) => {
          await sleep(5, options?.signal);
          return null;
        },
      },
    ];
  }
  async buildImage(image: Image, options: BuildImageOptions = {}): Promise<ImageBuild> {
    await sleep(15, options.signal);
    this.built++;
    return { uri: image.uri, digest: `sha256:${createHash("sha256").update(image.uri).digest("hex")}` };
  }
}

function images(registry: string, base = "busybox:1.36") {
  const run = unique();
  return Array.from({ length: IMAGES }, (_, i) => ({
    name: `img${i}`,
    image: Image.fromBase(base, { registry, name: `listeners-${run}-${i}` }).withEnvVars({ INDEX: String(i) }),
  }));
}

/** buildAll under one shared signal; the abort listeners that signal still carries after it. */
async function runUnderSharedSignal(inputs: ReturnType<typeof images>, options: Parameters<typeof buildAll>[1] = {}) {
  const shared = new AbortController();
  const results = await buildAll(inputs, { ...options, signal: shared.signal });
  // Warnings are emitted on a later tick.
  await new Promise((resolve) => setImmediate(resolve));
  return { results, after: getEventListeners(shared.signal, "abort").length };
}

/** A registry checker on core's client, with short back-offs so the retries of a refused/503 registry are quick. */
function registryChecker(): ImageCheckerLike {
  const client = new RegistryClient({ retry: { retries: 2, baseDelayMs: 5, maxDelayMs: 20 } });
  return {
    imageExists: async (repository: string, tag: string, platforms?: readonly string[], options?: ImageCheckOptions) => {
      const answer = await checkImage(`${repository}:${tag}`, {
        client,
        platforms: [...(platforms ?? [])],
        signal: options?.signal,
        onEvent: options?.onEvent,
      });
      return answer.present ? `${repository}:${tag}` : null;
    },
  };
}

describe("one AbortSignal shared by many images", () => {
  it(`buildAll of ${IMAGES} images at the default concurrency: no MaxListenersExceededWarning, no listener left on the shared signal`, async () => {
    const builder = new WaitingBuilder();
    const { results, after } = await runUnderSharedSignal(images("reg.example:5000"), { builder });
    expect(results.map((r) => r.action)).toEqual(Array(IMAGES).fill("built"));
    expect(builder.built).toBe(IMAGES);
    expect(listenerWarnings()).toEqual([]);
    expect(after).toBe(0);
  });

  it(`buildAll at a concurrency above Node's listener limit (${defaultMaxListeners + 6}): still no warning`, async () => {
    const builder = new WaitingBuilder();
    const { results, after } = await runUnderSharedSignal(images("reg.example:5000"), { builder, concurrency: defaultMaxListeners + 6 });
    expect(results.every((r) => r.action === "built")).toBe(true);
    expect(listenerWarnings()).toEqual([]);
    expect(after).toBe(0);
  });

  it("an abort of the shared signal still reaches every image waiting or running, and leaves no listener", async () => {
    const builder = new WaitingBuilder();
    const shared = new AbortController();
    const running = buildAll(images("reg.example:5000"), {
      builder,
      signal: shared.signal,
      onEvent: (event) => {
        if (event.type === "build.start") shared.abort(new Error("stop"));
      },
    });
    const results = await Promise.race([running, sleep(10_000).then(() => "timed out" as const)]);
    expect(results).not.toBe("timed out");
    const actions = (results as BuildAllResult[]).map((r) => r.action);
    expect(actions.filter((a) => a === "cancelled").length).toBe(IMAGES);
    expect(builder.built).toBe(0);
    expect(getEventListeners(shared.signal, "abort").length).toBe(0);
    expect(listenerWarnings()).toEqual([]);
  });

  it(`${IMAGES} concurrent build() calls sharing the caller's signal: no warning, no listener left`, async () => {
    const builder = new WaitingBuilder();
    const shared = new AbortController();
    const results = await Promise.all(images("reg.example:5000").map(({ image }) => build(image, { builder, signal: shared.signal })));
    await new Promise((resolve) => setImmediate(resolve));
    expect(results.map((r) => r.outcome)).toEqual(Array(IMAGES).fill("built"));
    expect(listenerWarnings()).toEqual([]);
    expect(getEventListeners(shared.signal, "abort").length).toBe(0);
  });

  describe("registry retries", () => {
    let server: http.Server;
    let answered = 0;
    beforeAll(async () => {
      server = http.createServer((request, response) => {
        answered++;
        request.resume();
        response.writeHead(503, { "content-type": "text/plain" });
        response.end("unavailable");
      });
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    });
    afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

    const retriesOf = (events: BuildEvent[]) => events.filter((e) => e.type === "registry.retry").length;

    it(`a registry answering 503 to every check of ${IMAGES} images: retries, then builds, with no warning`, async () => {
      const registry = `127.0.0.1:${(server.address() as AddressInfo).port}`;
      const events: BuildEvent[] = [];
      const builder = new WaitingBuilder(registryChecker());
      const { results, after } = await runUnderSharedSignal(images(registry), { builder, onEvent: (e) => events.push(e) });
      expect(answered).toBeGreaterThan(IMAGES);
      expect(retriesOf(events)).toBeGreaterThan(0);
      expect(results.every((r) => r.action === "built")).toBe(true);
      expect(listenerWarnings()).toEqual([]);
      expect(after).toBe(0);
    });

    it(`a registry refusing connections to every check of ${IMAGES} images: retries, then builds, with no warning`, async () => {
      const registry = `127.0.0.1:${await freePort()}`; // nothing listens there
      const events: BuildEvent[] = [];
      const builder = new WaitingBuilder(registryChecker());
      const { results, after } = await runUnderSharedSignal(images(registry), { builder, onEvent: (e) => events.push(e) });
      expect(retriesOf(events)).toBeGreaterThan(0);
      expect(events.some((e) => e.type === "check.result" && e.result === "error")).toBe(true);
      expect(results.every((r) => r.action === "built")).toBe(true);
      expect(listenerWarnings()).toEqual([]);
      expect(after).toBe(0);
    });
  });

  describe("pinBase lookups (real registry)", () => {
    let registry: TestRegistry;
    beforeAll(async () => {
      registry = await startRegistry();
    }, 120_000);
    afterAll(async () => {
      await registry?.stop();
    });

    it(`${IMAGES} images on one base pinned by digest: one lookup joined by all, no warning`, async () => {
      clearBaseDigestCache();
      const repository = `base-${unique()}`;
      const pushed = await pushTestImage(registry, repository, "1", "oci");
      const builder = new WaitingBuilder();
      const events: BuildEvent[] = [];
      const { results, after } = await runUnderSharedSignal(images("reg.example:5000", `${registry.host}/${repository}:1`), {
        builder,
        pinBase: true,
        onEvent: (e) => events.push(e),
      });
      expect(results.every((r) => r.action === "built")).toBe(true);
      const pinned = events.filter((e): e is Extract<BuildEvent, { type: "base.pinned" }> => e.type === "base.pinned");
      expect(pinned.length).toBe(IMAGES);
      expect(new Set(pinned.map((e) => e.digest))).toEqual(new Set([pushed.digest]));
      expect(listenerWarnings()).toEqual([]);
      expect(after).toBe(0);
    });
  });
  describe("promotion's concurrent blob copies (two real registries)", () => {
    let source: TestRegistry;
    let target: TestRegistry;
    beforeAll(async () => {
      [source, target] = await Promise.all([startRegistry(), startRegistry()]);
    }, 120_000);
    afterAll(async () => {
      await Promise.all([source?.stop(), target?.stop()]);
    });

    it(`an image of ${IMAGES} layers copied 16 at a time under one signal: no warning, no listener left`, async () => {
      const repository = `many-layers-${unique()}`;
      const layers = [];
      for (let i = 0; i < IMAGES; i++) layers.push(await uploadBlob(source, repository, Buffer.from(`layer ${i} of ${repository}\n`.repeat(64))));
      const config = await uploadBlob(source, repository, Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers" } })));
      const mediaType = "application/vnd.oci.image.manifest.v1+json";
      await putTestManifest(
        source,
        repository,
        "1",
        {
          schemaVersion: 2,
          mediaType,
          config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
          layers: layers.map((layer) => ({ mediaType: "application/vnd.oci.image.layer.v1.tar", ...layer })),
        },
        mediaType,
      );
      const shared = new AbortController();
      const client = new RegistryClient({ retry: { retries: 1, baseDelayMs: 10, maxDelayMs: 20 } });
      const promoted = await promoteImage(client, `${source.host}/${repository}:1`, `${target.host}/${repository}:1`, {
        concurrency: 16,
        signal: shared.signal,
      });
      await new Promise((resolve) => setImmediate(resolve));
      expect(promoted.mode).toBe("stream");
      expect(promoted.blobs.copied).toBe(layers.length + 1);
      expect(listenerWarnings()).toEqual([]);
      expect(getEventListeners(shared.signal, "abort").length).toBe(0);
    });
  });
});
