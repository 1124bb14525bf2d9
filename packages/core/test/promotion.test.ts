/**
 * Promotion (promotion/…): an image absent at its target but held by a `promoteFrom` registry is
 * copied instead of built. Against real registries (Debian's distribution 2.8) on loopback: one
 * behind htpasswd Basic auth, one behind Bearer tokens, an open one behind the push-recording proxy
 * (to see mounts vs uploads), and a source behind a proxy that corrupts one blob. Credentials come
 * from a DOCKER_CONFIG written here (the usual source), never passed to the code under test.
 * Outcomes are checked by asking the registries directly.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { PassThrough } from "node:stream";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ImageBuilder } from "../src/builder.js";
import { createRenderer } from "../src/cli/render.js";
import { loadConfig } from "../src/config.js";
import { build } from "../src/engine.js";
import { ConfigError, type KilnError, PromotionFailedError, ValidationError } from "../src/errors.js";
import type { BuildEvent } from "../src/events.js";
import { Image } from "../src/image.js";
import type { Architecture } from "../src/layers.js";
import { promoteImage } from "../src/promotion/copy.js";
import { PromotionStep } from "../src/promotion/engineStep.js";
import { selectPromoteFrom } from "../src/promotion/select.js";
import { checkImage } from "../src/registry/check.js";
import { RegistryClient } from "../src/registry/client.js";
import { init } from "../src/selection.js";
import { deleteTestManifest, pushTestImage, startRegistry, type TestRegistry } from "../../test-utils/src/registry.js";
import { pushSteps, startPushFaultProxy, type PushFaultProxy } from "../../test-utils/src/faultsPushProxy.js";

const scratch = mkdtempSync(join(tmpdir(), "kiln-promotion-"));
const projectDir = join(scratch, "project");
let basic: TestRegistry; // the staging registry: htpasswd Basic
let bearer: TestRegistry; // the production registry: Bearer tokens
let open: TestRegistry; // one registry for same-host promotion, behind `recorder`
let recorder: PushFaultProxy;
let corrupting: CorruptingProxy;
const savedEnv = { DOCKER_CONFIG: process.env.DOCKER_CONFIG, KILN_LOCK_DIR: process.env.KILN_LOCK_DIR, KILN_PROMOTE_FROM: process.env.KILN_PROMOTE_FROM };

/** A reverse proxy that flips one byte of one blob's body: a source whose stored blob is damaged. */
interface CorruptingProxy {
  host: string;
  corrupt: Set<string>;
  stop(): Promise<void>;
}
async function startCorruptingProxy(upstream: string): Promise<CorruptingProxy> {
  const target = new URL(upstream);
  const corrupt = new Set<string>();
  const server = http.createServer((req, res) => {
    const forwarded = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } },
      (answer) => {
        const parts: Buffer[] = [];
        answer.on("data", (c: Buffer) => parts.push(c));
        answer.on("end", () => {
          let body = Buffer.concat(parts);
          const digest = /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(req.url ?? "")?.[1];
          if (req.method === "GET" && digest && corrupt.has(digest) && body.length > 0) {
            body = Buffer.from(body);
            body[body.length - 1] = body[body.length - 1]! ^ 0xff;
          }
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          res.end(body);
        });
      },
    );
    forwarded.on("error", () => res.destroy());
    req.pipe(forwarded);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return { host: `127.0.0.1:${port}`, corrupt, stop: () => new Promise((resolve) => server.close(() => resolve())) };
}

beforeAll(async () => {
  [basic, bearer, open] = await Promise.all([startRegistry({ auth: "basic" }), startRegistry({ auth: "bearer" }), startRegistry()]);
  recorder = await startPushFaultProxy(open.url);
  corrupting = await startCorruptingProxy(basic.url);
  const auth = (r: TestRegistry) => ({ auth: Buffer.from(`${r.credentials!.username}:${r.credentials!.password}`).toString("base64") });
  const dockerConfig = join(scratch, "docker");
  mkdirSync(dockerConfig, { recursive: true });
  writeFileSync(
    join(dockerConfig, "config.json"),
    JSON.stringify({ auths: { [basic.host]: auth(basic), [corrupting.host]: auth(basic), [bearer.host]: auth(bearer) } }),
  );
  process.env.DOCKER_CONFIG = dockerConfig;
  process.env.KILN_LOCK_DIR = join(scratch, "locks");
  delete process.env.KILN_PROMOTE_FROM;
  mkdirSync(projectDir, { recursive: true });
}, 60_000);

afterAll(async () => {
  await Promise.all([basic?.stop(), bearer?.stop(), open?.stop(), recorder?.stop(), corrupting?.stop()]);
  for (const [key, value] of Object.entries(savedEnv)) {
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
  rmSync(scratch, { recursive: true, force: true });
});

/** A client as a user has it: credentials from DOCKER_CONFIG only. */
const userClient = () => new RegistryClient({ retry: { retries: 1, baseDelayMs: 10, maxDelayMs: 20 } });

let counter = 0;
function imageAt(registry: string, platform: Architecture[] = ["linux/amd64"], name = "app"): Image {
  return Image.fromBase("kiln-test/busybox:1.35", { registry, name, platform }).withEnvVars({
    RUN: `${process.pid}-${++counter}-${randomBytes(4).toString("hex")}`,
  });
}

/** The registry (TestRegistry) behind a host, for pushing as a builder would. */
const byHost = () =>
  new Map<string, TestRegistry>([
    [basic.host, basic],
    [bearer.host, bearer],
    [open.host, open],
    [recorder.host, { ...open, url: recorder.url }],
  ]);

/** A builder whose checker asks the registry (core's checkImage) and whose "build" pushes a real image over the API. */
function recordingBuilder(): ImageBuilder & { builds: string[] } {
  const builds: string[] = [];
  return {
    builds,
    getCheckers: () => [
      {
        name: "registry",
        imageExists: async (repository: string, tag: string, arch?: readonly Architecture[], options?: { signal?: AbortSignal }) => {
          const answer = await checkImage(`${repository}:${tag}`, { platforms: arch ?? [], signal: options?.signal });
          return answer.present ? answer.uri : null;
        },
      },
    ],
    async buildImage(image) {
      builds.push(image.uri);
      const slash = image.uri.indexOf("/");
      const colon = image.uri.lastIndexOf(":");
      const registry = byHost().get(image.uri.slice(0, slash))!;
      const pushed = await pushTestImage(
        registry,
        image.uri.slice(slash + 1, colon),
        image.tag,
        image.platform.length > 1 ? "oci-index-with-attestation" : "oci",
        { platforms: [...image.platform] },
      );
      return { uri: image.uri, digest: pushed.digest };
    },
  };
}

/** Where promotion looks for `image` in `sourceRegistry`: `<source>/<name>:<tag>` (the repository path after the host). */
function sourcePath(sourceRegistry: string, image: Image): { host: string; repository: string } {
  const slash = sourceRegistry.indexOf("/");
  return { host: sourceRegistry.slice(0, slash), repository: `${sourceRegistry.slice(slash + 1)}/${image.name}` };
}

describe("promotion between two registries with different auth (htpasswd Basic → Bearer)", () => {
  it("build(): absent at the target, present in the staging registry → streamed across, not built; same digest; events in order", async () => {
    const image = imageAt(`${bearer.host}/prod`);
    const staging = `${basic.host}/staging`;
    const pushed = await pushTestImage(basic, sourcePath(staging, image).repository, image.tag, "oci");
    const builder = recordingBuilder();
    const events: BuildEvent[] = [];
    const result = await build(image, { builder, projectDir, promoteFrom: [staging], onEvent: (e) => events.push(e) });

    expect(result).toMatchObject({ outcome: "promoted", uri: image.uri, digest: pushed.digest, promotedFrom: `${staging}/app:${image.tag}` });
    expect(builder.builds).toEqual([]);
    const there = await checkImage(image.uri, { platforms: ["linux/amd64"], client: userClient() });
    expect(there).toMatchObject({ present: true, digest: pushed.digest });
    const types = events.map((e) => e.type);
    expect(types.indexOf("promote.start")).toBeGreaterThan(types.lastIndexOf("check.result"));
    expect(types.indexOf("promote.done")).toBeGreaterThan(types.indexOf("promote.start"));
    const start = events.find((e) => e.type === "promote.start") as Extract<BuildEvent, { type: "promote.start" }>;
    const done = events.find((e) => e.type === "promote.done") as Extract<BuildEvent, { type: "promote.done" }>;
    expect(start.mode).toBe("stream");
    expect(done).toMatchObject({ digest: pushed.digest, mounted: 0, copied: 2 }); // config + layer
    expect(done.bytesCopied).toBeGreaterThan(0);
    expect(events.find((e) => e.type === "done")).toMatchObject({ built: false, promotedFrom: `${staging}/app:${image.tag}` });

    // The next build finds it at the target: no second promotion.
    const again = await build(image, { builder, projectDir, promoteFrom: [staging] });
    expect(again.outcome).toBe("found");
  });

  it("and the other way (Bearer → Basic) with promoteFrom from init(); the second source is used when the first lacks the image", async () => {
    const image = imageAt(`${basic.host}/prod`);
    const empty = `${open.host}/nothing-here`;
    const staging = `${bearer.host}/staging`;
    const pushed = await pushTestImage(bearer, sourcePath(staging, image).repository, image.tag, "docker-v2");
    const builder = recordingBuilder();
    init({ promoteFrom: [empty, staging] });
    try {
      const result = await build(image, { builder, projectDir });
      expect(result).toMatchObject({ outcome: "promoted", digest: pushed.digest, promotedFrom: `${staging}/app:${image.tag}` });
    } finally {
      init({});
    }
    expect(builder.builds).toEqual([]);
    expect((await checkImage(image.uri, { client: userClient() })).digest).toBe(pushed.digest);
  });

  it("dry run (what `kiln plan` asks): outcome would-promote naming the source; nothing is copied", async () => {
    const image = imageAt(`${bearer.host}/prod`);
    const staging = `${basic.host}/staging`;
    await pushTestImage(basic, sourcePath(staging, image).repository, image.tag, "oci");
    const builder = recordingBuilder();
    const result = await build(image, { builder, projectDir, promoteFrom: [staging], dryRun: true });
    expect(result).toMatchObject({ outcome: "would-promote", promotedFrom: `${staging}/app:${image.tag}` });
    expect((await checkImage(image.uri, { client: userClient() })).exists).toBe(false);
    // Without promoteFrom the same dry run would build.
    expect((await build(image, { builder, projectDir, dryRun: true })).outcome).toBe("would-build");
  });

  it("a source lacking a requested platform is not a candidate: the image is built", async () => {
    const image = imageAt(`${bearer.host}/prod`, ["linux/amd64", "linux/arm64"]);
    const staging = `${basic.host}/staging`;
    await pushTestImage(basic, sourcePath(staging, image).repository, image.tag, "oci-index-missing-platform");
    const builder = recordingBuilder();
    const result = await build(image, { builder, projectDir, promoteFrom: [staging] });
    expect(result.outcome).toBe("built");
    expect(builder.builds).toEqual([image.uri]);
  });
});

describe("an image with an explicit tag", () => {
  it("is never promoted (the tag can move: the copy may be another image): built, and a dry run or `kiln plan`'s step says build", async () => {
    const image = imageAt(`${bearer.host}/prod`).clone({ tag: `main-${randomBytes(4).toString("hex")}` });
    const staging = `${basic.host}/staging`;
    await pushTestImage(basic, sourcePath(staging, image).repository, image.tag, "oci");
    const builder = recordingBuilder();
    // What `kiln plan` asks when no builder is installed.
    const step = new PromotionStep({ image, sources: [staging], strict: false, signal: new AbortController().signal, onEvent: () => {} });
    expect(await step.findCandidate()).toBeUndefined();
    expect((await build(image, { builder, projectDir, promoteFrom: [staging], dryRun: true })).outcome).toBe("would-build");
    const result = await build(image, { builder, projectDir, promoteFrom: [staging] });
    expect(result.outcome).toBe("built");
    expect(builder.builds).toEqual([image.uri]);
  });
});

describe("a multi-platform index", () => {
  it("is promoted with every child manifest put by digest before the index's tag; digest preserved", async () => {
    const image = imageAt(`${recorder.host}/prod`, ["linux/amd64", "linux/arm64"]);
    const staging = `${basic.host}/staging`;
    const pushed = await pushTestImage(basic, sourcePath(staging, image).repository, image.tag, "oci-index-with-attestation");
    recorder.requests.length = 0;
    const result = await build(image, { builder: recordingBuilder(), projectDir, promoteFrom: [staging] });
    expect(result).toMatchObject({ outcome: "promoted", digest: pushed.digest });

    const puts = recorder.requests.filter((r) => pushSteps.manifestPut(r) && r.status === 201).map((r) => r.path.split("/manifests/")[1]);
    const children = pushed.children!.flatMap((c) => [c.digest, c.attestation!]);
    expect(puts.at(-1)).toBe(image.tag); // the tag last
    expect(puts.slice(0, -1).sort()).toEqual([...children].sort()); // every child before it
    const there = await checkImage(image.uri, { platforms: ["linux/amd64", "linux/arm64"], client: userClient() });
    expect(there).toMatchObject({ present: true, digest: pushed.digest, brokenPlatforms: [] });
  });

  it("only the requested platforms must exist: a deleted arm64 child is left out of a reduced index when only amd64 is wanted", async () => {
    const image = imageAt(`${bearer.host}/prod`, ["linux/amd64"]);
    const staging = `${basic.host}/staging`;
    const repository = sourcePath(staging, image).repository;
    const pushed = await pushTestImage(basic, repository, image.tag, "docker-manifest-list");
    await deleteTestManifest(basic, repository, pushed.children!.find((c) => c.platform === "linux/arm64")!.digest);
    const promoted = await promoteImage(userClient(), `${staging}/app:${image.tag}`, image.uri, { platforms: ["linux/amd64"] });
    expect(promoted.reducedIndex).toBe(true);
    expect(promoted.digest).not.toBe(pushed.digest);
    const there = await checkImage(image.uri, { platforms: ["linux/amd64"], client: userClient() });
    expect(there).toMatchObject({ present: true, digest: promoted.digest, platforms: ["linux/amd64"] });

    // Asking for arm64 too: the source cannot provide it.
    await expect(
      promoteImage(userClient(), `${staging}/app:${image.tag}`, `${bearer.host}/prod/other:${image.tag}`, { platforms: ["linux/amd64", "linux/arm64"] }),
    ).rejects.toMatchObject({ code: "KILN_PROMOTION_SOURCE_MISSING" });
  });
});

describe("same registry host: cross-repository mount", () => {
  it("every blob is mounted (POST ?mount= answered 201), none uploaded; the digest is the source's", async () => {
    // Its own repository: blobs an earlier test put in prod/app would count as "already there".
    const image = imageAt(`${recorder.host}/prod`, ["linux/amd64", "linux/arm64"], "mounted");
    const staging = `${recorder.host}/staging`;
    const pushed = await pushTestImage(open, sourcePath(staging, image).repository, image.tag, "oci-index-with-attestation");
    recorder.requests.length = 0;
    const events: BuildEvent[] = [];
    const builder = recordingBuilder();
    const result = await build(image, { builder, projectDir, promoteFrom: [staging], onEvent: (e) => events.push(e) });
    expect(result).toMatchObject({ outcome: "promoted", digest: pushed.digest });
    expect(builder.builds).toEqual([]);

    const mounts = recorder.requests.filter((r) => pushSteps.uploadStart(r) && r.path.includes("mount="));
    const uploads = recorder.requests.filter((r) => pushSteps.uploadData(r) || (pushSteps.uploadStart(r) && !r.path.includes("mount=")));
    const blobGets = recorder.requests.filter((r) => r.method === "GET" && r.path.includes("/blobs/") && !r.path.includes("uploads"));
    const done = events.find((e) => e.type === "promote.done") as Extract<BuildEvent, { type: "promote.done" }>;
    // The distinct blobs of the source's children, read from the registry itself.
    const blobs = new Set<string>();
    for (const child of pushed.children!.flatMap((c) => [c.digest, c.attestation!])) {
      const { manifest } = (await userClient().getManifest(`${open.host}/${sourcePath(staging, image).repository}@${child}`))!;
      for (const d of [manifest.config, ...(manifest.layers as unknown[])] as Array<{ digest: string }>) blobs.add(d.digest);
    }
    expect(done).toMatchObject({ mounted: blobs.size, copied: 0, existing: 0, bytesCopied: 0 });
    expect(mounts.filter((r) => r.status === 201)).toHaveLength(blobs.size);
    expect(uploads).toEqual([]);
    expect(blobGets).toEqual([]); // not a byte of a layer was read
    expect((events.find((e) => e.type === "promote.start") as Extract<BuildEvent, { type: "promote.start" }>).mode).toBe("mount");
    expect((await checkImage(image.uri, { platforms: ["linux/amd64", "linux/arm64"], client: userClient() })).digest).toBe(pushed.digest);
  });
});

describe("a source with a corrupted blob", () => {
  async function corruptedSource(image: Image): Promise<string> {
    const staging = `${corrupting.host}/staging`;
    const pushed = await pushTestImage(basic, sourcePath(staging, image).repository, image.tag, "oci");
    const manifest = await userClient().getManifest(`${basic.host}/${sourcePath(staging, image).repository}@${pushed.digest}`);
    const layer = (manifest!.manifest.layers as Array<{ digest: string }>)[0]!.digest;
    corrupting.corrupt.add(layer);
    return staging;
  }

  it("promoteImage: the digest mismatch is a PromotionFailedError (reason digest-mismatch) and nothing is tagged at the target", async () => {
    const image = imageAt(`${bearer.host}/prod`);
    const staging = await corruptedSource(image);
    const error = await promoteImage(userClient(), `${staging}/app:${image.tag}`, image.uri).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(PromotionFailedError.isInstance(error)).toBe(true);
    expect((error as KilnError).details).toMatchObject({ reason: "digest-mismatch" });
    expect((error as KilnError).hint).toMatch(/nothing was tagged/);
    expect((await checkImage(image.uri, { client: userClient() })).exists).toBe(false);
  });

  it("build() in strict mode fails with it and builds nothing; not strict, it warns and builds instead", async () => {
    const image = imageAt(`${bearer.host}/prod`);
    const staging = await corruptedSource(image);
    const strictBuilder = recordingBuilder();
    await expect(build(image, { builder: strictBuilder, projectDir, promoteFrom: [staging], strict: true })).rejects.toMatchObject({
      code: "KILN_PROMOTION_FAILED",
    });
    expect(strictBuilder.builds).toEqual([]);
    expect((await checkImage(image.uri, { client: userClient() })).exists).toBe(false);

    const events: BuildEvent[] = [];
    const builder = recordingBuilder();
    const result = await build(image, { builder, projectDir, promoteFrom: [staging], onEvent: (e) => events.push(e) });
    expect(result.outcome).toBe("built");
    expect(builder.builds).toEqual([image.uri]);
    expect(events.some((e) => e.type === "warning" && /could not be promoted.*building instead/.test(e.message))).toBe(true);
    expect(events.some((e) => e.type === "promote.done")).toBe(false);
  });
});

describe("the live view and --json", () => {
  it("render promote.start / promote.done and a promoted done line (plain and tty), and stream them as NDJSON", async () => {
    const image = imageAt(`${bearer.host}/prod`);
    const staging = `${basic.host}/staging`;
    const pushed = await pushTestImage(basic, sourcePath(staging, image).repository, image.tag, "oci");
    const sinks = { plain: "", tty: "", json: "" };
    const renderers = (Object.keys(sinks) as Array<keyof typeof sinks>).map((mode) => {
      const out = new PassThrough();
      out.on("data", (c: Buffer) => (sinks[mode] += c.toString()));
      return createRenderer(mode, Object.assign(out, { columns: 1000 }) as unknown as NodeJS.WriteStream);
    });
    await build(image, { builder: recordingBuilder(), projectDir, promoteFrom: [staging], onEvent: (e) => renderers.forEach((r) => r.onEvent(e)) });
    renderers.forEach((r) => r.close());
    const source = `${staging}/app:${image.tag}`;
    expect(sinks.plain).toContain(`promote from ${source} (streamed, linux/amd64)`);
    expect(sinks.plain).toMatch(new RegExp(`promoted ${pushed.digest}: 0 blob\\(s\\) mounted, 2 copied`));
    expect(sinks.plain).toContain(`promoted ${image.uri} ${pushed.digest} from ${source}`);
    expect(sinks.tty).toContain(`✔ ${image.uri}: promoted ${image.uri} ${pushed.digest} from ${source}`);
    const lines = sinks.json
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as BuildEvent);
    expect(lines.find((e) => e.type === "promote.start")).toMatchObject({ source, target: image.uri, platforms: ["linux/amd64"], mode: "stream" });
    expect(lines.find((e) => e.type === "promote.done")).toMatchObject({ source, digest: pushed.digest, copied: 2, mounted: 0 });
  });
});

describe("promoteFrom settings", () => {
  it("precedence: build() option > init() > KILN_PROMOTE_FROM > config file; [] turns it off", () => {
    const dir = mkdtempSync(join(scratch, "config-"));
    writeFileSync(join(dir, "kiln.config.json"), JSON.stringify({ promoteFrom: ["ghcr.io/acme-staging", "localhost:5000/cache"] }));
    const config = loadConfig(dir);
    expect(config.promoteFrom).toEqual(["ghcr.io/acme-staging", "localhost:5000/cache"]);
    expect(selectPromoteFrom(undefined, config)).toEqual({ sources: ["ghcr.io/acme-staging", "localhost:5000/cache"], source: "config" });
    process.env.KILN_PROMOTE_FROM = " registry.example.com/stage , quay.io/acme ";
    try {
      expect(selectPromoteFrom(undefined, config)).toEqual({ sources: ["registry.example.com/stage", "quay.io/acme"], source: "env" });
      init({ promoteFrom: ["ghcr.io/from-init"] });
      expect(selectPromoteFrom(undefined, config)).toEqual({ sources: ["ghcr.io/from-init"], source: "init" });
      expect(selectPromoteFrom(["ghcr.io/from-option"], config)).toEqual({ sources: ["ghcr.io/from-option"], source: "option" });
      expect(selectPromoteFrom([], config)).toEqual({ sources: [], source: "option" });
    } finally {
      init({});
      delete process.env.KILN_PROMOTE_FROM;
    }
    expect(selectPromoteFrom(undefined, {})).toEqual({ sources: [], source: "default" });
  });

  it("invalid values are typed errors naming where they came from", async () => {
    const dir = mkdtempSync(join(scratch, "config-"));
    writeFileSync(join(dir, "kiln.config.json"), JSON.stringify({ promoteFrom: "ghcr.io/acme" }));
    expect(() => loadConfig(dir)).toThrow(ConfigError);
    expect(() => loadConfig(dir)).toThrow(/promoteFrom/);
    expect(() => init({ promoteFrom: ["https://ghcr.io/acme"] })).toThrow(ValidationError);
    expect(() => init({ promoteFrom: ["oci:./layout"] })).toThrow(/OCI layout/);
    process.env.KILN_PROMOTE_FROM = "ghcr.io/ok,UPPER/bad path";
    try {
      expect(() => selectPromoteFrom(undefined, {})).toThrow(ConfigError);
    } finally {
      delete process.env.KILN_PROMOTE_FROM;
    }
    // A typo of the build() option is caught like any other.
    await expect(build(imageAt(`${bearer.host}/prod`), { projectDir, promoteFrm: [] } as never)).rejects.toThrow(/did you mean "promoteFrom"/);
  });
});
