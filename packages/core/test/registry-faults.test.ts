/**
 * The client behind a fault-injecting proxy in front of a real Basic-auth registry: bounded retries
 * with backoff, Retry-After honoured (and a long one refused fast), no false "present" ever, a typed
 * error with a hint when it cannot tell, rate limits surfaced as events, and no credential anywhere
 * in what it reports.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { KilnError, RateLimitError, RegistryError, RegistryTimeoutError } from "../src/errors.js";
import type { BuildEvent } from "../src/events.js";
import { checkImage, type CheckImageResult } from "../src/registry/check.js";
import { RegistryClient } from "../src/registry/client.js";
import { startFaultProxy, type Fault, type FaultPlan, type FaultProxy } from "../../test-utils/src/faultProxy.js";
import { pushTestImage, startRegistry, type PushedTestImage, type TestRegistry } from "../../test-utils/src/registry.js";

const RETRIES = 3;
// Room for four 400 ms stalls plus back-offs inside one call's deadline (no retry starts past it).
const TOTAL_MS = 3_000;
let registry: TestRegistry;
let proxy: FaultProxy;
let image: PushedTestImage;
let single: PushedTestImage;
const events: BuildEvent[] = [];
const failures: unknown[] = [];
let client: RegistryClient;

const isManifestGet = ({ method, path }: { method: string; path: string }) => method === "GET" && path.includes("/manifests/");
const isManifestHead = ({ method, path }: { method: string; path: string }) => method === "HEAD" && path.includes("/manifests/");

beforeAll(async () => {
  registry = await startRegistry({ auth: "basic" });
  image = await pushTestImage(registry, "kiln/multi", "v1", "oci-index-with-attestation");
  single = await pushTestImage(registry, "kiln/single", "v1", "docker-v2");
  proxy = await startFaultProxy(registry.url);
});
afterAll(async () => {
  await proxy?.stop();
  await registry?.stop();
});

beforeEach(async () => {
  proxy.setPlan([]);
  client = new RegistryClient({
    useDockerConfig: false,
    credentials: { [proxy.host]: registry.credentials! },
    retry: { retries: RETRIES, baseDelayMs: 20, maxDelayMs: 100, maxRetryAfterMs: 2_000 },
    timeouts: { connectMs: 1_000, idleMs: 400, totalMs: TOTAL_MS },
    onEvent: (e) => events.push(e),
  });
  // Learn the auth scheme first so the plan's faults meet authenticated requests only.
  await client.headManifest(`${proxy.host}/kiln/multi:v1`);
  proxy.requests.length = 0;
  events.length = 0;
});

const ref = () => `${proxy.host}/kiln/multi:v1`;
const both = ["linux/amd64", "linux/arm64"];

async function check(reference = ref()): Promise<CheckImageResult | KilnError> {
  try {
    return await checkImage(reference, { platforms: both, client });
  } catch (error) {
    failures.push(error);
    if (!KilnError.isInstance(error)) throw error;
    return error;
  }
}

function plan(faults: Fault[], match?: FaultPlan["match"], then?: Fault) {
  proxy.setPlan({ faults, match, then });
}

const retries = () => events.filter((e) => e.type === "registry.retry");
const attempts = (match: (r: { method: string; path: string }) => boolean) => proxy.requests.filter(match).length;

describe("recovers within the retry budget", () => {
  it("429 with Retry-After: waits as told, then answers", async () => {
    plan([{ kind: "status", status: 429, retryAfter: "1" }], isManifestHead);
    const started = Date.now();
    const result = await check();
    expect(result).toMatchObject({ present: true, digest: image.digest });
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect(retries()).toEqual([expect.objectContaining({ attempt: 1, delayMs: 1000, reason: "HTTP 429" })]);
    expect(events.find((e) => e.type === "registry.ratelimit")).toMatchObject({ retryAfterSeconds: 1, registry: proxy.host });
  });

  it("429 with an HTTP-date Retry-After", async () => {
    plan([{ kind: "status", status: 429, retryAfter: new Date(Date.now() + 1_000).toUTCString() }], isManifestHead);
    expect(await check()).toMatchObject({ present: true });
    expect(retries()).toHaveLength(1);
    expect((retries()[0] as { delayMs: number }).delayMs).toBeLessThanOrEqual(1_000);
  });

  it("429 without Retry-After and 500/502/503 bursts: jittered backoff, then answers", async () => {
    plan(
      [
        { kind: "status", status: 429 },
        { kind: "status", status: 500 },
        { kind: "status", status: 502 },
      ],
      isManifestHead,
    );
    expect(await check()).toMatchObject({ present: true });
    expect(retries().map((e) => (e as { reason: string }).reason)).toEqual(["HTTP 429", "HTTP 500", "HTTP 502"]);
    // The tag's HEAD (the index's children are HEADed by digest afterwards).
    expect(attempts((r) => isManifestHead(r) && !r.path.includes("/manifests/sha256:"))).toBe(4);
  });

  it("a reset before the answer, a reset mid-body, a truncated body and invalid JSON are retried", async () => {
    plan([{ kind: "reset" }, { kind: "reset-mid-body" }, { kind: "truncate" }], isManifestGet);
    expect(await check()).toMatchObject({ present: true, digest: image.digest });
    plan([{ kind: "invalid-json" }], isManifestGet);
    expect(await check()).toMatchObject({ present: true });
    expect(retries().map((e) => (e as { reason: string }).reason)).toEqual(["reset", "truncated", "truncated", expect.stringContaining("digest mismatch")]);
  });

  it("a registry that refuses HEAD (405) is asked with GET", async () => {
    plan([{ kind: "status", status: 405 }], isManifestHead);
    expect(await client.headManifest(ref())).toMatchObject({ digest: image.digest });
    expect(proxy.requests.filter((r) => r.path.includes("/manifests/")).map((r) => r.method)).toEqual(["HEAD", "GET"]);
  });

  it("surfaces rate-limit headers (Docker Hub's `;w=` form) as events", async () => {
    plan([{ kind: "status", status: 429, retryAfter: "0", headers: { "ratelimit-limit": "100;w=21600", "ratelimit-remaining": "0;w=21600" } }], isManifestHead);
    expect(await check()).toMatchObject({ present: true });
    expect(events.find((e) => e.type === "registry.ratelimit")).toMatchObject({ limit: 100, remaining: 0, retryAfterSeconds: 0 });
  });
});

describe("cannot tell: a typed error with a hint, never a false answer", () => {
  const cases: Array<{ name: string; faults: Fault; match: FaultPlan["match"]; kind: typeof RegistryError | typeof RateLimitError; attemptsExpected: number }> =
    [
      { name: "429 forever", faults: { kind: "status", status: 429 }, match: isManifestHead, kind: RateLimitError, attemptsExpected: RETRIES + 1 },
      { name: "503 forever", faults: { kind: "status", status: 503 }, match: isManifestHead, kind: RegistryError, attemptsExpected: RETRIES + 1 },
      { name: "resets forever", faults: { kind: "reset" }, match: isManifestHead, kind: RegistryError, attemptsExpected: RETRIES + 1 },
      { name: "truncated bodies", faults: { kind: "truncate" }, match: isManifestGet, kind: RegistryError, attemptsExpected: RETRIES + 1 },
      { name: "invalid JSON", faults: { kind: "invalid-json" }, match: isManifestGet, kind: RegistryError, attemptsExpected: RETRIES + 1 },
      { name: "a server that never answers", faults: { kind: "hang" }, match: isManifestHead, kind: RegistryError, attemptsExpected: RETRIES + 1 },
    ];
  for (const c of cases) {
    it(c.name, async () => {
      plan([], c.match, c.faults);
      const result = await check();
      expect(c.kind.isInstance(result)).toBe(true);
      const error = result as KilnError;
      expect(error.message).toContain(proxy.host);
      expect(error.hint).toBeTruthy();
      expect(attempts(c.match!)).toBe(c.attemptsExpected);
      expect(retries()).toHaveLength(RETRIES);
    });
  }

  it("a slow drip past the deadline: RegistryTimeoutError at the deadline, not retried (a retry would drip too)", async () => {
    plan([{ kind: "drip", intervalMs: 100, chunkBytes: 16 }], isManifestGet);
    const started = Date.now();
    const result = await check();
    expect(RegistryTimeoutError.isInstance(result), String(result)).toBe(true);
    expect((result as KilnError).hint).toContain("timeouts.totalMs");
    expect(Date.now() - started).toBeLessThan(TOTAL_MS + 1_500);
    expect(attempts(isManifestGet)).toBe(1);
    expect(retries()).toEqual([]);
  });

  it("a Retry-After beyond the cap fails fast with RateLimitError (no long sleep)", async () => {
    plan([{ kind: "status", status: 429, retryAfter: "3600" }], isManifestHead);
    const started = Date.now();
    const result = await check();
    expect(RateLimitError.isInstance(result)).toBe(true);
    expect((result as KilnError).details).toMatchObject({ retryAfterSeconds: 3600 });
    expect((result as KilnError).hint).toMatch(/wait|try again/i);
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(attempts(isManifestHead)).toBe(1);
  });

  it("a damaged config blob of a single-arch image is an error, not a platform answer", async () => {
    plan([], ({ method, path }) => method === "GET" && path.includes("/blobs/"), { kind: "invalid-json" });
    const result = await check(`${proxy.host}/kiln/single:v1`);
    expect(RegistryError.isInstance(result)).toBe(true);
    expect(single.platforms).toEqual(["linux/amd64"]);
  });

  it("an unreachable registry is a RegistryError with a hint", async () => {
    const dead = new RegistryClient({ useDockerConfig: false, retry: { retries: 1, baseDelayMs: 5 }, timeouts: { connectMs: 500 } });
    const error = await checkImage("127.0.0.1:1/kiln/multi:v1", { client: dead }).catch((e: unknown) => e);
    failures.push(error);
    expect(RegistryError.isInstance(error)).toBe(true);
    expect((error as KilnError).hint).toMatch(/reachable/);
  });
});

it("no credential in any error, hint, detail or event", async () => {
  await client.headManifest(ref());
  const { username, password } = registry.credentials!;
  const basic = Buffer.from(`${username}:${password}`).toString("base64");
  // The proxy saw the credential, so the scan below is looking for something that was really sent.
  expect(proxy.requests.some((r) => r.authorization?.includes(basic))).toBe(true);
  const text = JSON.stringify([events, failures.map((e) => (KilnError.isInstance(e) ? { ...e.toJSON(), stack: e.stack, cause: String(e.cause) } : String(e)))]);
  expect(failures.length).toBeGreaterThan(5);
  expect(text).not.toContain(password);
  expect(text).not.toContain(basic);
});
