/**
 * Registry writes (registry/blobs.ts, registry/manifestsWrite.ts) against the real Debian
 * docker-registry (distribution 2.8) in its three auth modes, through the push fault proxy (which
 * records every request and keeps the Host header, so upload Locations lead back through it).
 * Every outcome is checked by asking the registry DIRECTLY whether it holds the blob / tag.
 */
import { randomBytes, createHash } from "node:crypto";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KilnError } from "../src/errors.js";
import type { BuildEvent } from "../src/events.js";
import { openBlobStream, uploadBlob, type BlobSource } from "../src/registry/blobs.js";
import { RegistryClient } from "../src/registry/client.js";
import { putImageManifests } from "../src/registry/manifestsWrite.js";
import { pushSteps, startPushFaultProxy, type PushFaultProxy } from "../../test-utils/src/faultsPushProxy.js";
import { startRegistry, type RegistryAuthMode, type TestRegistry } from "../../test-utils/src/registry.js";

const digestOf = (data: Buffer) => `sha256:${createHash("sha256").update(data).digest("hex")}`;
const source = (data: Buffer, known = true): BlobSource => ({
  ...(known ? { digest: digestOf(data), size: data.length } : {}),
  open: () => Readable.from([data.subarray(0, data.length >> 1), data.subarray(data.length >> 1)]),
});

interface Target {
  registry: TestRegistry;
  proxy: PushFaultProxy;
}
const started: Target[] = [];
async function target(auth: RegistryAuthMode): Promise<Target> {
  const registry = await startRegistry({ auth });
  const proxy = await startPushFaultProxy(registry.url);
  const t = { registry, proxy };
  started.push(t);
  return t;
}
afterAll(async () => {
  for (const t of started) {
    await t.proxy.stop();
    await t.registry.stop();
  }
});

const credentialsFor = (t: Target, host: string) => (t.registry.credentials ? { [host]: t.registry.credentials } : {});
/** Through the proxy, with fast retries. */
const viaProxy = (t: Target, events: BuildEvent[] = []) =>
  new RegistryClient({
    useDockerConfig: false,
    credentials: credentialsFor(t, t.proxy.host),
    retry: { retries: 3, baseDelayMs: 20, maxDelayMs: 100 },
    timeouts: { connectMs: 2_000, idleMs: 5_000, totalMs: 20_000 },
    onEvent: (e) => events.push(e),
  });
/** Straight to the registry: the ground truth. */
const direct = (t: Target) => new RegistryClient({ useDockerConfig: false, credentials: credentialsFor(t, t.registry.host) });
const held = (t: Target, repository: string, digest: string) => direct(t).blobExists(`${t.registry.host}/${repository}`, digest);

async function readStream(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

describe.each(["none", "basic", "bearer"] as const)("registry writes, auth %s", (auth) => {
  let t: Target;
  beforeAll(async () => {
    t = await target(auth);
  });

  it("small blob: the lone POST ?digest= gets 202 from distribution 2.8, so the bytes go to that session; verified by HEAD; a second upload is skipped", async () => {
    const data = randomBytes(3000);
    const client = viaProxy(t);
    t.proxy.requests.length = 0;
    const first = await uploadBlob(client, `${t.proxy.host}/kiln/writes`, source(data));
    expect(first).toMatchObject({ digest: digestOf(data), via: "monolithic", sessions: 1 });
    const posts = t.proxy.requests.filter((r) => pushSteps.uploadStart(r) && r.status !== 401);
    expect(posts.some((r) => r.path.includes("digest=") && r.status === 202)).toBe(true);
    expect(t.proxy.requests.some((r) => r.method === "PUT" && r.path.includes("/blobs/uploads/") && r.status === 201)).toBe(true);
    expect(await held(t, "kiln/writes", first.digest)).toBe(true);
    const again = await uploadBlob(client, `${t.proxy.host}/kiln/writes`, source(data));
    expect(again.via).toBe("existing");
  });

  it("large blob with no digest given: chunked (POST, a PATCH per chunk, PUT ?digest=), the digest computed on the fly; read back as a verified stream", async () => {
    const data = randomBytes(2_500_000);
    t.proxy.requests.length = 0;
    const uploaded = await uploadBlob(viaProxy(t), `${t.proxy.host}/kiln/writes`, source(data, false), { chunkBytes: 1024 * 1024 });
    expect(uploaded).toMatchObject({ digest: digestOf(data), size: data.length, via: "chunked" });
    expect(t.proxy.requests.filter((r) => r.method === "PATCH" && r.status === 202)).toHaveLength(3);
    expect(await held(t, "kiln/writes", uploaded.digest)).toBe(true);
    const back = await readStream(await openBlobStream(viaProxy(t), `${t.proxy.host}/kiln/writes`, uploaded.digest));
    expect(back.equals(data)).toBe(true);
  });

  it("mounts a blob from another repository of the same registry instead of uploading it", async () => {
    const data = randomBytes(5000);
    const client = viaProxy(t);
    await uploadBlob(client, `${t.proxy.host}/kiln/mount-src`, source(data));
    t.proxy.requests.length = 0;
    const mounted = await uploadBlob(client, `${t.proxy.host}/kiln/mount-dst`, source(data), { mountFrom: ["kiln/mount-src"] });
    expect(mounted.via).toBe("mounted");
    expect(t.proxy.requests.some((r) => r.method === "PATCH" || (r.method === "PUT" && r.path.includes("/blobs/")))).toBe(false);
    expect(await held(t, "kiln/mount-dst", digestOf(data))).toBe(true);
  });

  it("puts child manifests by digest, then the index under the tag", async () => {
    const client = viaProxy(t);
    const repo = `${t.proxy.host}/kiln/multi`;
    const children = [];
    for (const architecture of ["amd64", "arm64"]) {
      const layer = randomBytes(100);
      const config = Buffer.from(JSON.stringify({ architecture, os: "linux", config: {}, rootfs: { type: "layers", diff_ids: [digestOf(layer)] } }));
      await uploadBlob(client, repo, source(layer));
      await uploadBlob(client, repo, source(config));
      const manifest = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: digestOf(config), size: config.length },
          layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", digest: digestOf(layer), size: layer.length }],
        }),
      );
      children.push({ body: manifest, mediaType: "application/vnd.oci.image.manifest.v1+json", architecture });
    }
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: children.map((c) => ({
          mediaType: c.mediaType,
          digest: digestOf(c.body),
          size: c.body.length,
          platform: { os: "linux", architecture: c.architecture },
        })),
      }),
    );
    t.proxy.requests.length = 0;
    const digest = await putImageManifests(client, `${repo}:v1`, children, { body: index, mediaType: "application/vnd.oci.image.index.v1+json" });
    expect(digest).toBe(digestOf(index));
    const puts = t.proxy.requests.filter((r) => pushSteps.manifestPut(r) && r.status === 201).map((r) => r.path.split("/manifests/")[1]);
    expect(puts).toEqual([digestOf(children[0]!.body), digestOf(children[1]!.body), "v1"]);
    const platforms = await direct(t).platforms(`${t.registry.host}/kiln/multi:v1`);
    expect(platforms).toEqual({ digest: digestOf(index), platforms: ["linux/amd64", "linux/arm64"] });
  });
});

describe("registry writes under faults (Basic auth registry behind the push fault proxy)", () => {
  let t: Target;
  beforeAll(async () => {
    t = await target("basic");
  });
  const isPatch = (r: { method: string; path: string }) => r.method === "PATCH" && r.path.includes("/blobs/uploads/");
  const isDigestPut = (r: { method: string; path: string }) => r.method === "PUT" && r.path.includes("/blobs/uploads/");

  async function attempt(plan: Parameters<PushFaultProxy["setPlan"]>[0], data: Buffer, options: Parameters<typeof uploadBlob>[3] = {}) {
    const events: BuildEvent[] = [];
    const client = viaProxy(t, events);
    t.proxy.setPlan(plan);
    t.proxy.requests.length = 0;
    try {
      const result = await uploadBlob(client, `${t.proxy.host}/kiln/faults`, source(data), {
        chunkBytes: 256 * 1024,
        monolithicMaxBytes: 64 * 1024,
        ...options,
      });
      return { result, error: undefined as unknown, events, held: await held(t, "kiln/faults", digestOf(data)) };
    } catch (error) {
      return { result: undefined, error, events, held: await held(t, "kiln/faults", digestOf(data)) };
    } finally {
      t.proxy.setPlan([]);
    }
  }

  it("5xx on a PATCH mid-upload: retried, the blob is held", async () => {
    const data = randomBytes(700_000);
    const outcome = await attempt({ faults: [{ kind: "status", status: 500 }], match: (r) => isPatch(r) && t.proxy.requests.filter(isPatch).length > 1 }, data);
    expect(outcome.error).toBeUndefined();
    expect(outcome.held).toBe(true);
    expect(outcome.events.some((e) => e.type === "registry.retry" && /HTTP 500/.test((e as { reason: string }).reason))).toBe(true);
  });

  it("connection reset half-way through a PATCH: a fresh upload session, the blob is held", async () => {
    const data = randomBytes(700_000);
    const outcome = await attempt({ faults: [{ kind: "reset-mid-upload" }], match: isPatch }, data);
    expect(outcome.error).toBeUndefined();
    expect(outcome.held).toBe(true);
    expect(outcome.result!.sessions + outcome.events.filter((e) => e.type === "registry.retry").length).toBeGreaterThan(1);
  });

  it("the registry closes the connection on the final PUT ?digest=: retried or verified, the blob is held", async () => {
    const data = randomBytes(400_000);
    const outcome = await attempt({ faults: [{ kind: "reset" }], match: isDigestPut }, data);
    expect(outcome.error).toBeUndefined();
    expect(outcome.held).toBe(true);
  });

  it("a 201 to the monolithic POST that stored nothing is caught by the HEAD; the chunked form then stores it", async () => {
    const data = randomBytes(2000);
    const outcome = await attempt(
      { faults: [{ kind: "status", status: 201, body: "" }], match: (r) => pushSteps.uploadStart(r) && r.path.includes("digest=") },
      data,
    );
    expect(outcome.error).toBeUndefined();
    expect(outcome.result).toMatchObject({ via: "chunked", sessions: 2 });
    expect(outcome.held).toBe(true);
  });

  it("a refused cross-repository mount (403) falls back to an upload", async () => {
    const data = randomBytes(3000);
    const outcome = await attempt({ faults: [{ kind: "status", status: 403 }], match: (r) => pushSteps.uploadStart(r) && r.path.includes("mount=") }, data, {
      mountFrom: ["kiln/elsewhere"],
    });
    expect(outcome.error).toBeUndefined();
    expect(outcome.result!.via).toBe("monolithic");
    expect(outcome.held).toBe(true);
  });

  it("503 on every upload request: a typed error with a hint after bounded sessions, the blob not held", async () => {
    const data = randomBytes(300_000);
    const outcome = await attempt({ faults: [], match: pushSteps.uploadData, then: { kind: "status", status: 503 } }, data, { sessions: 2 });
    expect(KilnError.isInstance(outcome.error)).toBe(true);
    expect((outcome.error as KilnError).hint).toBeTruthy();
    expect(outcome.held).toBe(false);
    expect(t.proxy.requests.filter(pushSteps.uploadStart).length).toBeLessThanOrEqual(2 * 4);
    expect(String((outcome.error as Error).message)).not.toContain(t.registry.credentials!.password);
  });

  it("a manifest whose blob upload failed is never tagged: putImageManifests is not reached and the tag stays absent", async () => {
    const layer = randomBytes(300_000);
    const client = viaProxy(t);
    t.proxy.setPlan({ faults: [], match: pushSteps.uploadData, then: { kind: "status", status: 503 } });
    let failed = false;
    try {
      await uploadBlob(client, `${t.proxy.host}/kiln/faults`, source(layer), { sessions: 1 });
      await putImageManifests(client, `${t.proxy.host}/kiln/faults:never`, [], {
        body: Buffer.from("{}"),
        mediaType: "application/vnd.oci.image.manifest.v1+json",
      });
    } catch {
      failed = true;
    } finally {
      t.proxy.setPlan([]);
    }
    expect(failed).toBe(true);
    expect(await direct(t).headManifest(`${t.registry.host}/kiln/faults:never`)).toBeNull();
  });
});
