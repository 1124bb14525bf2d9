/**
 * RedisLockProvider and RedisCheckCache against a real redis-server (Debian's, started on a free
 * loopback port by the test): lease semantics, single-flight checks, TTLs measured by Redis,
 * password / ACL / TLS, an unreachable server, and an idle connection that never keeps a process alive.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { CoordinationUnavailableError, ConfigError, type CheckCacheKey } from "@kiln/core";
import { startRedis, type TestRedis } from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeSharedConnections } from "../src/connection.js";
import { RedisCheckCache, RedisLockProvider } from "../src/index.js";

let redis: TestRedis;
const env = () => ({ KILN_REDIS_URL: redis.url, KILN_REDIS_PREFIX: "kiln:" });

beforeAll(async () => {
  redis = await startRedis({ password: "pw-plain-8c1e" });
});
afterAll(async () => {
  await closeSharedConnections();
  await redis?.stop();
});

describe("RedisLockProvider", () => {
  it("one holder at a time; fencing tokens grow; an expired holder can neither renew nor release its successor's lease", async () => {
    const a = new RedisLockProvider({ env: env(), leaseMs: 600 });
    const b = new RedisLockProvider({ env: env(), leaseMs: 600 });
    const first = await a.acquire({ key: "img-1", image: "img-1" });
    expect(first.holder).toMatch(/^[^/]+\/\d+$/);
    const waits: Array<{ holder?: string; remainingLeaseMs?: number }> = [];
    const started = Date.now();
    // `first` is never renewed: it expires after 600 ms and the waiter takes over.
    const second = await b.acquire({ key: "img-1", image: "img-1", onWait: (w) => waits.push(w) });
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(400);
    expect(waited).toBeLessThan(600 + 1_000);
    expect(second.waited).toBe(true);
    expect(waits[0]).toMatchObject({ holder: first.holder });
    expect(waits[0]!.remainingLeaseMs).toBeLessThanOrEqual(600);
    expect(second.fencingToken).toBeGreaterThan(first.fencingToken);

    expect(await first.renew()).toBe(false);
    await first.release(); // compare-and-delete: must not remove the successor's lease
    expect(await second.renew()).toBe(true);
    const third = new RedisLockProvider({ env: env(), leaseMs: 600 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 300);
    await expect(third.acquire({ key: "img-1", image: "img-1", signal: controller.signal })).rejects.toMatchObject({ code: "KILN_CANCELLED" });
    await second.release();
    const fourth = await third.acquire({ key: "img-1", image: "img-1" });
    expect(fourth.waited).toBe(false);
    expect(fourth.fencingToken).toBeGreaterThan(second.fencingToken);
    await fourth.release();
  });

  it("keys are Cluster-safe (one hash tag per lease) and carry the prefix", async () => {
    const provider = new RedisLockProvider({ env: { ...env(), KILN_REDIS_PREFIX: "team-a:" } });
    const lease = await provider.acquire({ key: "img-2", image: "img-2" });
    expect(lease.location).toMatch(/^team-a:\{lock:[0-9a-f]{40}\}:lease$/);
    expect((await redis.cli("PTTL", lease.location!)).trim()).toMatch(/^[1-9]\d*$/);
    await lease.release();
    expect((await redis.cli("EXISTS", lease.location!)).trim()).toBe("0");
  });
});

const key = (tag: string): CheckCacheKey => ({ repository: "127.0.0.1:5000/app", tag, platforms: ["linux/amd64"] });
const DIGEST = `sha256:${"ab".repeat(32)}`;

describe("RedisCheckCache", () => {
  it("20 concurrent lookups of a missing key elect one checker; the others get its answer", async () => {
    const caches = Array.from({ length: 20 }, () => new RedisCheckCache({ env: env() }));
    const lookups = caches.map((c) => c.lookup(key("single-flight"), { singleFlight: true }));
    // Whoever was elected answers after a moment (a registry check).
    await new Promise((r) => setTimeout(r, 300));
    const elected = await Promise.race(lookups.map((l, i) => l.then((r) => (r.claimed ? i : -1))));
    expect(elected).toBeGreaterThanOrEqual(0);
    await caches[elected]!.putPresent(key("single-flight"), { uri: "127.0.0.1:5000/app:single-flight", digest: DIGEST });
    const results = await Promise.all(lookups);
    expect(results.filter((r) => r.claimed)).toHaveLength(1);
    expect(results.filter((r) => r.entry?.state === "present" && r.entry.digest === DIGEST)).toHaveLength(19);
  });

  it("a claim given up without an answer lets the next waiter check; nobody waits past fillWaitMs", async () => {
    const a = new RedisCheckCache({ env: env() });
    const b = new RedisCheckCache({ env: env(), fillWaitMs: 400 });
    expect((await a.lookup(key("given-up"), { singleFlight: true })).claimed).toBe(true);
    const started = Date.now();
    const waiting = b.lookup(key("given-up"), { singleFlight: true });
    await new Promise((r) => setTimeout(r, 100));
    await a.releaseClaim(key("given-up"));
    expect(await waiting).toEqual({ entry: null, claimed: true });
    expect(Date.now() - started).toBeLessThan(400);
    // b's claim (it lasts b's fillWaitMs) outlives c's patience: c gives up waiting and checks on its own.
    const c = new RedisCheckCache({ env: env(), fillWaitMs: 150 });
    const t = Date.now();
    expect(await c.lookup(key("given-up"), { singleFlight: true })).toEqual({ entry: null, claimed: false });
    expect(Date.now() - t).toBeGreaterThanOrEqual(140);
  });

  it("a slow checker keeps its claim alive (nobody else checks meanwhile); a vanished one is replaced within claimMs", async () => {
    const slow = new RedisCheckCache({ env: env(), claimMs: 300 });
    const waiter = new RedisCheckCache({ env: env(), claimMs: 300, fillWaitMs: 5_000 });
    expect((await slow.lookup(key("slow"), { singleFlight: true })).claimed).toBe(true);
    const waiting = waiter.lookup(key("slow"), { singleFlight: true });
    await new Promise((r) => setTimeout(r, 1_200)); // four claim lifetimes: renewed, not expired
    await slow.putPresent(key("slow"), { uri: "127.0.0.1:5000/app:slow", digest: DIGEST });
    expect(await waiting).toMatchObject({ claimed: false, entry: { state: "present", digest: DIGEST } });

    // A claimer that died (a claim nobody renews): the next waiter takes over once it expires.
    const { fill } = waiter.keysOf(key("orphaned"));
    await redis.cli("SET", fill, "dead-host/1/x", "PX", "300");
    const started = Date.now();
    expect(await waiter.lookup(key("orphaned"), { singleFlight: true })).toEqual({ entry: null, claimed: true });
    expect(Date.now() - started).toBeLessThan(1_500);
    await waiter.releaseClaim(key("orphaned"));
  });

  it("ages come from Redis (PTTL): past the TTL an entry is stale; 'absent' lives only briefly and is capped at 60 s", async () => {
    const cache = new RedisCheckCache({ env: env(), ttlMs: 300, absentTtlMs: 300 });
    await cache.putPresent(key("aging"), { uri: "127.0.0.1:5000/app:aging", digest: DIGEST });
    expect((await cache.lookup(key("aging"))).entry).toMatchObject({ state: "present", stale: false });
    await cache.putAbsent(key("gone"));
    expect((await cache.lookup(key("gone"))).entry).toMatchObject({ state: "absent" });
    await new Promise((r) => setTimeout(r, 450));
    expect((await cache.lookup(key("aging"))).entry).toMatchObject({ state: "present", stale: true, digest: DIGEST });
    expect((await cache.lookup(key("gone"))).entry).toBeNull();
    expect(() => new RedisCheckCache({ env: { ...env(), KILN_REDIS_ABSENT_TTL_MS: "3600000" } })).toThrow(ConfigError);
    // A value that does not parse, or a digest that is not one, is a miss.
    await redis.cli("SET", cache.keysOf(key("junk")).entry, '{"v":1,"state":"present","uri":"x","digest":"nope","life":1000}', "PX", "1000");
    expect((await cache.lookup(key("junk"))).entry).toBeNull();
  });
});

describe("connection: credentials, TLS, failures", () => {
  it("a wrong password fails fast with CoordinationUnavailableError that names the server but never the password", async () => {
    const wrong = redis.url.replace("pw-plain-8c1e", "not-the-password-77");
    const provider = new RedisLockProvider({ env: { KILN_REDIS_URL: wrong } });
    const started = Date.now();
    const error = await provider.acquire({ key: "k", image: "k" }).catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(CoordinationUnavailableError.isInstance(error)).toBe(true);
    const text = `${(error as Error).message} ${(error as { hint?: string }).hint} ${JSON.stringify((error as { details?: unknown }).details)}`;
    expect(text).toMatch(/WRONGPASS/);
    expect(text).toContain(`redis://127.0.0.1:${redis.port}/0`);
    expect(text).not.toContain("not-the-password-77");
    expect(text).not.toContain("pw-plain-8c1e");
  });

  it("TLS with an ACL user limited to the key prefix: works with the CA; refused without it; a prefix outside the ACL gets NOPERM", async () => {
    const secure = await startRedis({ tls: true, aclUser: { username: "kiln-ci", password: "acl-pw-5d2a", keyPattern: "ci:*" } });
    try {
      const tlsEnv = { KILN_REDIS_URL: secure.url, KILN_REDIS_TLS_CA_FILE: secure.caFile!, KILN_REDIS_PREFIX: "ci:" };
      expect(secure.url.startsWith("rediss://")).toBe(true);
      const lease = await new RedisLockProvider({ env: tlsEnv }).acquire({ key: "tls", image: "tls" });
      expect(lease.location).toMatch(/^ci:/);
      await lease.release();
      const cache = new RedisCheckCache({ env: tlsEnv });
      await cache.putPresent(key("tls"), { uri: "127.0.0.1:5000/app:tls", digest: DIGEST });
      expect((await cache.lookup(key("tls"))).entry).toMatchObject({ state: "present", digest: DIGEST });

      const untrusted = await new RedisLockProvider({ env: { KILN_REDIS_URL: secure.url } }).acquire({ key: "tls", image: "tls" }).catch((e: unknown) => e);
      expect(CoordinationUnavailableError.isInstance(untrusted)).toBe(true);
      expect((untrusted as { hint: string }).hint).toMatch(/KILN_REDIS_TLS_CA_FILE/);
      expect((untrusted as Error).message).not.toContain("acl-pw-5d2a");

      const outside = await new RedisLockProvider({ env: { ...tlsEnv, KILN_REDIS_PREFIX: "other:" } })
        .acquire({ key: "tls", image: "tls" })
        .catch((e: unknown) => e);
      expect((outside as Error).message).toMatch(/NOPERM/);
      expect((outside as { hint: string }).hint).toMatch(/ACL/);
    } finally {
      await secure.stop();
    }
  });

  it("a stopped Redis fails every call within the deadlines — never hangs — and works again once it is back", async () => {
    const own = await startRedis();
    try {
      const provider = new RedisLockProvider({ env: { KILN_REDIS_URL: own.url } });
      const cache = new RedisCheckCache({ env: { KILN_REDIS_URL: own.url } });
      await (await provider.acquire({ key: "down", image: "down" })).release();
      await own.kill();
      for (const call of [() => provider.acquire({ key: "down", image: "down" }), () => cache.lookup(key("down"), { singleFlight: true })]) {
        const started = Date.now();
        const error = await call().catch((e: unknown) => e);
        expect(CoordinationUnavailableError.isInstance(error)).toBe(true);
        expect((error as Error).message).toMatch(/ECONNREFUSED|closed|max retries/i);
        expect(Date.now() - started).toBeLessThan(3_000);
      }
      await own.start();
      const lease = await provider.acquire({ key: "down", image: "down" });
      expect(lease.fencingToken).toBe(1); // a fresh instance without persistence: counters start over (see README)
      await lease.release();
    } finally {
      await own.stop();
    }
  });

  it("a process using the cache loads no Redis client library: a lookup costs node:net and this package only", async () => {
    const dist = fileURLToPath(new URL("../dist/index.js", import.meta.url));
    const script = `import { createRequire } from "node:module";
      import { RedisCheckCache } from ${JSON.stringify(dist)};
      const cache = new RedisCheckCache();
      await cache.putPresent({ repository: "r/light", tag: "t", platforms: [] }, { uri: "r/light:t", digest: "sha256:${"1".repeat(64)}" });
      const found = await cache.lookup({ repository: "r/light", tag: "t", platforms: [] });
      const loaded = Object.keys(createRequire(import.meta.url)("node:module")._cache).filter((p) => p.includes("node_modules") && !p.includes("/@kiln/core/") && !p.includes("/core/dist/"));
      console.log(JSON.stringify({ state: found.entry?.state, loaded }));`;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], { env: { ...process.env, ...env() }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    const code = await new Promise((r) => child.on("close", r));
    clearTimeout(timer);
    expect(code, out).toBe(0);
    expect(JSON.parse(out.trim().split("\n").pop()!)).toEqual({ state: "present", loaded: [] });
  });

  it("a reply that arrived while the process was starved of CPU past the command deadline still counts", async () => {
    const cache = new RedisCheckCache({ env: { ...env(), KILN_REDIS_COMMAND_TIMEOUT_MS: "200" } });
    await cache.putPresent(key("starved"), { uri: "127.0.0.1:5000/app:starved", digest: DIGEST });
    const lookup = cache.lookup(key("starved"), { singleFlight: true });
    await new Promise((r) => setImmediate(r)); // the command is written
    const busyUntil = Date.now() + 600;
    while (Date.now() < busyUntil); // 100 processes on 2 cores: this one gets no CPU for a while
    expect((await lookup).entry).toMatchObject({ state: "present", digest: DIGEST });
  });

  it("an idle connection does not keep a process alive: a script that took and released a lease exits at once", async () => {
    const dist = fileURLToPath(new URL("../dist/index.js", import.meta.url));
    const script = `import { RedisLockProvider } from ${JSON.stringify(dist)};
      const lease = await new RedisLockProvider().acquire({ key: "exit", image: "exit" });
      await lease.release();
      console.log("released " + Date.now());`;
    const started = Date.now();
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], { env: { ...process.env, ...env() }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    const code = await new Promise((r) => child.on("close", r));
    clearTimeout(timer);
    expect(code, out).toBe(0);
    const releasedAt = Number(/released (\d+)/.exec(out)?.[1]);
    expect(Date.now() - releasedAt).toBeLessThan(1_500); // no lingering socket or reconnect timer
    expect(Date.now() - started).toBeLessThan(15_000);
  });
});
