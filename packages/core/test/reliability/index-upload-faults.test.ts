/**
 * INDEX uploads (`RegistryClient.putManifest`, what the Docker builder uses to join per-platform
 * images) through the fault proxy in front of a real registry. Each case ends with the registry
 * asked DIRECTLY (not through the proxy) whether it holds the tag: a digest returned by
 * putManifest must be the digest the registry serves; a failure is a typed KilnError with a hint,
 * and (unless the registry accepted the PUT before the fault) the tag is absent.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthError, KilnError, RateLimitError, RegistryError } from "../../src/errors.js";
import type { BuildEvent } from "../../src/events.js";
import { RegistryClient } from "../../src/registry/client.js";
import { startPushFaultProxy as startFaultProxy, type PushFault as Fault, type PushFaultProxy as FaultProxy } from "../../../test-utils/src/faultsPushProxy.js";
import { pushTestImage, startRegistry, type TestRegistry } from "../../../test-utils/src/registry.js";

const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
const isManifestPut = ({ method, path }: { method: string; path: string }) => method === "PUT" && path.includes("/manifests/");

interface Target {
  registry: TestRegistry;
  proxy: FaultProxy;
  index: Buffer;
}
const targets: Target[] = [];

async function target(auth: "basic" | "bearer", tokenExpiresIn?: number): Promise<Target> {
  const registry = await startRegistry({ auth, tokenExpiresIn });
  const child = await pushTestImage(registry, "kiln/idx", "child", "oci");
  const head = await direct(registry).headManifest(`${registry.host}/kiln/idx:child`);
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [{ mediaType: child.mediaType, digest: child.digest, size: head!.size, platform: { os: "linux", architecture: "amd64" } }],
    }),
  );
  const proxy = await startFaultProxy(registry.url);
  const t = { registry, proxy, index };
  targets.push(t);
  return t;
}

const direct = (registry: TestRegistry) => new RegistryClient({ useDockerConfig: false, credentials: { [registry.host]: registry.credentials! } });

function client(t: Target, events: BuildEvent[]) {
  return new RegistryClient({
    useDockerConfig: false,
    credentials: { [t.proxy.host]: t.registry.credentials! },
    retry: { retries: 3, baseDelayMs: 20, maxDelayMs: 100, maxRetryAfterMs: 2_000 },
    timeouts: { connectMs: 1_000, idleMs: 400, totalMs: 1_500 },
    onEvent: (e) => events.push(e),
  });
}

let tagCounter = 0;
/** PUTs the index under a fresh tag with `faults` on the manifest PUT; returns what happened and what the registry holds. */
async function upload(t: Target, faults: Fault[], then?: Fault) {
  const events: BuildEvent[] = [];
  const c = client(t, events);
  await c.headManifest(`${t.proxy.host}/kiln/idx:child`); // learn the auth scheme first
  const tag = `idx-${++tagCounter}`;
  t.proxy.setPlan({ faults, match: isManifestPut, then });
  t.proxy.requests.length = 0;
  const started = Date.now();
  let digest: string | undefined;
  let error: unknown;
  try {
    digest = await c.putManifest(`${t.proxy.host}/kiln/idx:${tag}`, t.index, OCI_INDEX);
  } catch (e) {
    error = e;
  }
  const elapsedMs = Date.now() - started;
  t.proxy.setPlan([]);
  const held = (await direct(t.registry).headManifest(`${t.registry.host}/kiln/idx:${tag}`))?.digest ?? null;
  const puts = t.proxy.requests.filter(isManifestPut).length;
  return { digest, error, held, elapsedMs, puts, events, retries: events.filter((e) => e.type === "registry.retry") };
}

function expectSound(outcome: Awaited<ReturnType<typeof upload>>) {
  if (outcome.error === undefined) {
    expect(outcome.digest).toMatch(/^sha256:/);
    expect(outcome.held).toBe(outcome.digest);
  } else {
    expect(KilnError.isInstance(outcome.error), String(outcome.error)).toBe(true);
    expect((outcome.error as KilnError).hint).toBeTruthy();
  }
  expect(outcome.puts).toBeLessThanOrEqual(4); // 1 + 3 retries at most
  expect(outcome.elapsedMs).toBeLessThan(10_000);
}

let basic: Target;
beforeAll(async () => {
  basic = await target("basic");
});
afterAll(async () => {
  for (const t of targets) {
    await t.proxy.stop();
    await t.registry.stop();
  }
});

describe("index upload through a faulty registry", () => {
  it("clean: the returned digest is the one the registry serves", async () => {
    const o = await upload(basic, []);
    expectSound(o);
    expect(o.error).toBeUndefined();
    expect(o.retries).toHaveLength(0);
  });

  it("429 with Retry-After: waits as told, then completes", async () => {
    const o = await upload(basic, [{ kind: "status", status: 429, retryAfter: "1" }]);
    expectSound(o);
    expect(o.error).toBeUndefined();
    expect(o.elapsedMs).toBeGreaterThanOrEqual(950);
    expect(o.retries).toEqual([expect.objectContaining({ reason: "HTTP 429", delayMs: 1000 })]);
  });

  it("429 without Retry-After then 500/502: backoff, completes on the 4th attempt; a 503 burst past the 3-retry budget is a RegistryError", async () => {
    const recovered = await upload(basic, [
      { kind: "status", status: 429 },
      { kind: "status", status: 500 },
      { kind: "status", status: 502 },
    ]);
    expectSound(recovered);
    expect(recovered.error).toBeUndefined();
    expect(recovered.puts).toBe(4);
    const exhausted = await upload(basic, [], { kind: "status", status: 503 });
    expectSound(exhausted);
    expect(RegistryError.isInstance(exhausted.error)).toBe(true);
    expect(exhausted.held).toBeNull();
    expect(exhausted.puts).toBe(4);
  });

  it("a Retry-After longer than the client will sleep: RateLimitError at once, nothing stored", async () => {
    const o = await upload(basic, [], { kind: "status", status: 429, retryAfter: "120" });
    expectSound(o);
    expect(RateLimitError.isInstance(o.error)).toBe(true);
    expect((o.error as RateLimitError).details).toMatchObject({ retryAfterSeconds: 120 });
    expect(o.held).toBeNull();
    expect(o.elapsedMs).toBeLessThan(1_000);
  });

  it("a reset before the answer (after the registry stored it) and a reset mid-upload: retried (PUT is idempotent), completes", async () => {
    for (const kind of ["reset", "reset-mid-upload"] as const) {
      const o = await upload(basic, [{ kind }]);
      expectSound(o);
      expect(o.error).toBeUndefined();
      expect(o.retries.length).toBeGreaterThanOrEqual(1);
    }
  });

  it("a 201 whose (empty) body is cut or truncated: the digest is still the one the registry holds", async () => {
    for (const kind of ["reset-mid-body", "truncate"] as const) {
      const o = await upload(basic, [{ kind }]);
      expectSound(o);
      expect(o.error).toBeUndefined();
    }
  });

  it("an invalid-JSON body on the 201: ignored; the digest is verified by the registry's header", async () => {
    const o = await upload(basic, [{ kind: "invalid-json" }]);
    expectSound(o);
    expect(o.error).toBeUndefined();
  });

  it("a slow drip past the per-attempt deadline: a timeout, retried, completes within the bound", async () => {
    const o = await upload(basic, [{ kind: "drip", intervalMs: 600 }]);
    expectSound(o);
    expect(o.error).toBeUndefined();
    expect(o.retries.map((e) => (e as { reason: string }).reason)).toEqual([expect.stringMatching(/timeout|timed out/i)]);
  });

  it("a registry that never answers: bounded attempts, then a typed error; the elapsed time is bounded", async () => {
    const o = await upload(basic, [], { kind: "hang" });
    expectSound(o);
    expect(KilnError.isInstance(o.error)).toBe(true);
  });
});

describe("Bearer tokens expiring mid-upload", () => {
  it("a 401 invalid_token on the PUT: a fresh token is fetched and the upload completes", async () => {
    const t = await target("bearer");
    const server = t.registry.tokenServer!;
    const challenge = `Bearer realm="${server.realm}",service="${server.service}",error="invalid_token"`;
    const before = server.requests.length;
    const o = await upload(t, [{ kind: "status", status: 401, headers: { "www-authenticate": challenge } }]);
    expectSound(o);
    expect(o.error).toBeUndefined();
    expect(server.requests.length).toBeGreaterThan(before);
  });

  it("a token that really expires (1 s lifetime) between two uploads: the second still completes", async () => {
    const t = await target("bearer", 1);
    const first = await upload(t, []);
    expectSound(first);
    await new Promise((r) => setTimeout(r, 2_200));
    const second = await upload(t, []);
    expectSound(second);
    expect(second.error).toBeUndefined();
  });

  it("an account the token server refuses: AuthError with a hint, nothing stored, no credential in the error", async () => {
    const t = await target("bearer");
    const events: BuildEvent[] = [];
    const wrong = new RegistryClient({
      useDockerConfig: false,
      credentials: { [t.proxy.host]: { username: "kiln", password: "not-the-Secret-42" } },
      onEvent: (e) => events.push(e),
    });
    const error = await wrong.putManifest(`${t.proxy.host}/kiln/idx:denied`, t.index, OCI_INDEX).catch((e) => e);
    expect(AuthError.isInstance(error), String(error)).toBe(true);
    expect(error.hint).toBeTruthy();
    expect(JSON.stringify([error.message, error.hint, error.details, events])).not.toContain("not-the-Secret-42");
    expect(await direct(t.registry).headManifest(`${t.registry.host}/kiln/idx:denied`)).toBeNull();
  });
});
