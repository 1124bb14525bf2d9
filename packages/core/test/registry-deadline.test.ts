/**
 * "Every registry request has a total deadline" (issue 12, item 7c). A registry that dripped a
 * manifest body one byte at a time once kept `kiln check` busy for 121 s (four 30 s attempts). Now
 * each request — connect, headers, the whole body, token fetches too — has a deadline
 * (`timeouts.totalMs`, KILN_REGISTRY_TIMEOUT_MS, default 30 s); a request past it is not retried; a
 * retry after another failure gets its own deadline, but none starts once the call has spent it.
 * The caller's AbortSignal composes with it: abort → CancelledError, deadline → RegistryTimeoutError,
 * never "absent". Real registry behind the fault proxy, short deadlines (≈1–2 s).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { CancelledError, ConfigError, type KilnError, RateLimitError, RegistryTimeoutError } from "../src/errors.js";
import type { BuildEvent } from "../src/events.js";
import { checkImage } from "../src/registry/check.js";
import { RegistryClient, type RegistryClientOptions } from "../src/registry/client.js";
import { startFaultProxy, type FaultProxy } from "../../test-utils/src/faultProxy.js";
import { pushTestImage, startRegistry, type PushedTestImage, type TestRegistry } from "../../test-utils/src/registry.js";
import { runKiln } from "./support/runKiln.js";

const BOTH = ["linux/amd64", "linux/arm64"];
const isManifestGet = ({ method, path }: { method: string; path: string }) => method === "GET" && path.includes("/manifests/");
const isTagHead = ({ method, path }: { method: string; path: string }) => method === "HEAD" && path.endsWith("/manifests/v1");

let registry: TestRegistry;
let proxy: FaultProxy;
let image: PushedTestImage;
/** Size of the index document the check GETs (to drip it at a chosen pace). */
let indexBytes: number;
const events: BuildEvent[] = [];

beforeAll(async () => {
  registry = await startRegistry();
  image = await pushTestImage(registry, "kiln/slow", "v1", "oci-index-with-attestation");
  const res = await fetch(`${registry.url}/v2/kiln/slow/manifests/v1`, { headers: { accept: image.mediaType } });
  indexBytes = (await res.arrayBuffer()).byteLength;
  proxy = await startFaultProxy(registry.url);
});
afterAll(async () => {
  await proxy?.stop();
  await registry?.stop();
});
beforeEach(() => {
  proxy.setPlan([]);
  proxy.requests.length = 0;
  events.length = 0;
});

/** A client with fast back-offs, `totalMs` as given, and no environment (so the tests' own env cannot leak in). */
function client(timeouts: RegistryClientOptions["timeouts"], options: Partial<RegistryClientOptions> = {}) {
  return new RegistryClient({
    useDockerConfig: false,
    env: {},
    retry: { retries: 3, baseDelayMs: 20, maxDelayMs: 100, maxRetryAfterMs: 5_000 },
    timeouts: { connectMs: 1_000, ...timeouts },
    onEvent: (e) => events.push(e),
    ...options,
  });
}

const ref = () => `${proxy.host}/kiln/slow:v1`;
const count = (match: (r: { method: string; path: string }) => boolean) => proxy.requests.filter(match).length;
const retries = () => events.filter((e) => e.type === "registry.retry");

async function timed<T>(run: () => Promise<T>): Promise<{ result: T | unknown; ms: number }> {
  const started = Date.now();
  try {
    return { result: await run(), ms: Date.now() - started };
  } catch (error) {
    return { result: error, ms: Date.now() - started };
  }
}

describe("a dripping registry answers within the deadline", () => {
  it("a manifest body dripped one byte at a time: RegistryTimeoutError at the 1.5 s deadline, one request, the hint names the setting; an abort before it is a CancelledError; the next check has its own deadline", async () => {
    const c = client({ idleMs: 10_000, totalMs: 1_500 });
    proxy.setPlan({ faults: [], match: isManifestGet, then: { kind: "drip", intervalMs: 50, chunkBytes: 1 } });

    // The caller's abort comes first: CancelledError, not a timeout.
    const aborted = await timed(() => checkImage(ref(), { platforms: BOTH, client: c, signal: AbortSignal.timeout(300) }));
    expect(CancelledError.isInstance(aborted.result), String(aborted.result)).toBe(true);
    expect(aborted.ms).toBeLessThan(1_000);

    proxy.requests.length = 0;
    const { result, ms } = await timed(() => checkImage(ref(), { platforms: BOTH, client: c }));
    expect(RegistryTimeoutError.isInstance(result), String(result)).toBe(true);
    const error = result as KilnError;
    expect(error.message).toContain("did not finish answering within the 1.5 s request deadline");
    expect(error.hint).toContain("timeouts.totalMs (now 1500)");
    expect(error.details).toMatchObject({ timeoutMs: 1_500, attempts: 1, reason: "deadline", registry: proxy.host });
    expect(ms).toBeGreaterThanOrEqual(1_400);
    expect(ms).toBeLessThan(3_000);
    expect(count(isManifestGet)).toBe(1); // not retried: a retry would drip too
    expect(retries()).toEqual([]);

    // The registry recovers: the same client's next check gets a fresh deadline and answers.
    proxy.setPlan([]);
    expect(await checkImage(ref(), { platforms: BOTH, client: c })).toMatchObject({ present: true, digest: image.digest });
  }, 20_000);

  it("KILN_REGISTRY_TIMEOUT_MS sets the deadline and the hint names it; the client option wins over it; a bad value is a ConfigError", async () => {
    proxy.setPlan({ faults: [], match: isManifestGet, then: { kind: "drip", intervalMs: 50, chunkBytes: 1 } });
    const fromEnv = await timed(() =>
      checkImage(ref(), { platforms: BOTH, client: client({ idleMs: 10_000 }, { env: { KILN_REGISTRY_TIMEOUT_MS: "1200" } }) }),
    );
    expect(RegistryTimeoutError.isInstance(fromEnv.result), String(fromEnv.result)).toBe(true);
    expect((fromEnv.result as KilnError).hint).toContain("KILN_REGISTRY_TIMEOUT_MS (now 1200)");
    expect((fromEnv.result as KilnError).details).toMatchObject({ timeoutMs: 1_200 });
    expect(fromEnv.ms).toBeLessThan(3_000);

    const optionWins = await timed(() =>
      checkImage(ref(), { platforms: BOTH, client: client({ idleMs: 10_000, totalMs: 800 }, { env: { KILN_REGISTRY_TIMEOUT_MS: "60000" } }) }),
    );
    expect((optionWins.result as KilnError).details).toMatchObject({ timeoutMs: 800 });
    expect(optionWins.ms).toBeLessThan(2_500);

    let bad: unknown;
    try {
      client({}, { env: { KILN_REGISTRY_TIMEOUT_MS: "soon" } });
    } catch (error) {
      bad = error;
    }
    expect(ConfigError.isInstance(bad), String(bad)).toBe(true);
    expect((bad as KilnError).hint).toContain("KILN_REGISTRY_TIMEOUT_MS=30000");
  }, 20_000);

  it("a retry after a stall has its own full deadline: a slow but finishing answer succeeds past the first deadline; a dripping one times out one deadline after the retry began", async () => {
    const chunkBytes = Math.ceil(indexBytes / 12); // the whole index in 12 chunks, 120 ms apart: ≈1.4 s
    const slowButDone = { kind: "drip" as const, intervalMs: 120, chunkBytes };
    const c = client({ idleMs: 800, totalMs: 2_000 });

    proxy.setPlan({ faults: [{ kind: "hang" }, slowButDone], match: isManifestGet });
    const finished = await timed(() => checkImage(ref(), { platforms: BOTH, client: c }));
    expect(finished.result).toMatchObject({ present: true, digest: image.digest });
    expect(finished.ms).toBeGreaterThan(2_000); // outlived the first attempt's deadline: the retry had its own
    expect(retries().map((e) => (e as { reason: string }).reason)).toEqual(["timeout"]);
    expect(count(isManifestGet)).toBe(2);

    proxy.requests.length = 0;
    events.length = 0;
    proxy.setPlan({ faults: [{ kind: "hang" }], match: isManifestGet, then: { kind: "drip", intervalMs: 50, chunkBytes: 1 } });
    const dripped = await timed(() => checkImage(ref(), { platforms: BOTH, client: c }));
    expect(RegistryTimeoutError.isInstance(dripped.result), String(dripped.result)).toBe(true);
    expect((dripped.result as KilnError).details).toMatchObject({ attempts: 2, reason: "deadline" });
    expect(dripped.ms).toBeGreaterThanOrEqual(2_700); // 0.8 s stall + a full 2 s deadline
    expect(dripped.ms).toBeLessThan(4_000); // one call ends within twice its deadline
    expect(count(isManifestGet)).toBe(2);
  }, 20_000);

  it("a registry that never answers: no attempt starts once the call has spent its deadline — the call ends within twice it", async () => {
    proxy.setPlan({ faults: [], match: isTagHead, then: { kind: "hang" } });
    const c = client({ idleMs: 400, totalMs: 1_000 }, { retry: { retries: 10, baseDelayMs: 20, maxDelayMs: 50 } });
    const { result, ms } = await timed(() => checkImage(ref(), { platforms: BOTH, client: c }));
    expect(RegistryTimeoutError.isInstance(result), String(result)).toBe(true);
    expect((result as KilnError).message).toContain("within the 1 s request deadline");
    expect((result as KilnError).details).toMatchObject({ reason: "timeout" });
    expect(ms).toBeLessThan(2_000);
    // Two or three 400 ms stalls fit in 1 s, not the 11 attempts the retry budget alone would allow.
    expect(count(isTagHead)).toBeGreaterThanOrEqual(2);
    expect(count(isTagHead)).toBeLessThanOrEqual(3);
  }, 20_000);

  it("a Retry-After that would end past the deadline is not slept through: the 429 stands as a RateLimitError, at once", async () => {
    proxy.setPlan({ faults: [], match: isTagHead, then: { kind: "status", status: 429, retryAfter: "2" } });
    const { result, ms } = await timed(() => checkImage(ref(), { platforms: BOTH, client: client({ totalMs: 1_500 }) }));
    expect(RateLimitError.isInstance(result), String(result)).toBe(true);
    expect((result as KilnError).details).toMatchObject({ retryAfterSeconds: 2 });
    expect(ms).toBeLessThan(1_000);
    expect(count(isTagHead)).toBe(1);
  });
});

describe("token fetches get the same deadline", () => {
  let bearer: TestRegistry;
  let tokenProxy: FaultProxy;
  beforeAll(async () => {
    bearer = await startRegistry({ auth: "bearer" });
    await pushTestImage(bearer, "kiln/slow", "v1", "oci");
    tokenProxy = await startFaultProxy(new URL(bearer.tokenServer!.realm).origin);
  });
  afterAll(async () => {
    await tokenProxy?.stop();
    await bearer?.stop();
  });

  it("a token service that drips its answer: RegistryTimeoutError naming the token service at the deadline, one token request", async () => {
    const server = bearer.tokenServer!;
    const endpoints = { [bearer.host]: { url: bearer.url, tokenRealm: `${tokenProxy.url}${new URL(server.realm).pathname}`, tokenService: server.service } };
    const c = client({ idleMs: 10_000, totalMs: 1_500 }, { endpoints, credentials: { [bearer.host]: bearer.credentials! } });
    tokenProxy.setPlan({ faults: [], then: { kind: "drip", intervalMs: 50, chunkBytes: 1 } });
    const { result, ms } = await timed(() => checkImage(`${bearer.host}/kiln/slow:v1`, { platforms: ["linux/amd64"], client: c }));
    expect(RegistryTimeoutError.isInstance(result), String(result)).toBe(true);
    expect((result as KilnError).message).toContain("its token service");
    expect((result as KilnError).hint).toContain("timeouts.totalMs (now 1500)");
    expect(ms).toBeLessThan(3_000);
    expect(tokenProxy.requests).toHaveLength(1);
    // No credential in what is reported.
    expect(JSON.stringify([(result as KilnError).message, (result as KilnError).hint, (result as KilnError).details])).not.toContain(
      bearer.credentials!.password,
    );

    tokenProxy.setPlan([]);
    expect(await checkImage(`${bearer.host}/kiln/slow:v1`, { platforms: ["linux/amd64"], client: c })).toMatchObject({ present: true });
  }, 20_000);
});

describe("kiln check against a dripping registry", () => {
  it("KILN_REGISTRY_TIMEOUT_MS=1500: exit 2 (could not tell) within seconds, the hint names the variable", async () => {
    proxy.setPlan({ faults: [], match: isManifestGet, then: { kind: "drip", intervalMs: 50, chunkBytes: 1 } });
    const dir = mkdtempSync(join(tmpdir(), "kiln-deadline-cli-"));
    try {
      const run = await runKiln(["check", ref(), "--json"], {
        cwd: dir,
        env: { KILN_REGISTRY_TIMEOUT_MS: "1500", DOCKER_CONFIG: join(dir, "docker") },
        timeoutMs: 20_000,
      });
      expect(run.code, run.stderr).toBe(2);
      expect(run.ms).toBeLessThan(10_000);
      expect(JSON.parse(run.stdout)).toMatchObject({ status: "unknown", error: { code: "KILN_REGISTRY_TIMEOUT" } });
      expect(run.stderr).toContain("could not tell");
      expect(run.stderr).toContain("KILN_REGISTRY_TIMEOUT_MS (now 1500)");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
