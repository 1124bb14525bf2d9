/**
 * Coordination plugin kinds in core: discovery of `kiln.lockProviders` / `kiln.checkCaches`,
 * selection precedence, and the engine's order — cache, check, lease, re-check, build, push,
 * remember, release — with in-memory providers (unit level; @kiln/redis's tests run it all on a
 * real Redis with real `kiln` processes). Registry answers come from a real local registry.
 */
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { pushTestImage, startRegistry, type TestRegistry } from "../../test-utils/src/registry.js";
import type { BuildImageOptions, ImageBuild, ImageBuilder } from "../src/builder.js";
import { run as pluginsCommand } from "../src/cli/commands/plugins.js";
import type { CommandContext } from "../src/cli/run.js";
import { loadConfig } from "../src/config.js";
import { LeaseKeeper } from "../src/coordination/leaseKeeper.js";
import { selectCheckCache, selectLockProvider } from "../src/coordination/select.js";
import type { CachedCheck, CheckCache, CheckCacheKey, Lease, LeaseRequest, LockProvider } from "../src/coordination/types.js";
import { discoverPlugins, loadCheckCache, loadLockProvider } from "../src/discovery.js";
import { build, buildKey, init } from "../src/engine.js";
import { ConfigError, CoordinationUnavailableError, LeaseLostError, PluginLoadError } from "../src/errors.js";
import type { BuildEvent } from "../src/events.js";
import { Image } from "../src/image.js";
import { checkImage } from "../src/registry/check.js";

const scratch = realpathSync(mkdtempSync(join(tmpdir(), "kiln-coord-")));
const FIXTURE = join(import.meta.dirname, "fixtures/plugins/coordination-plugin");
let registry: TestRegistry;

/** A user project that lists the fixture coordination plugin (linked into node_modules, as a workspace would). */
function projectWith(config?: Record<string, unknown>): string {
  const dir = mkdtempSync(join(scratch, "project-"));
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "app", private: true, dependencies: { "kiln-fixture-coordination": "*" } }));
  mkdirSync(join(dir, "node_modules"));
  symlinkSync(FIXTURE, join(dir, "node_modules/kiln-fixture-coordination"));
  if (config) writeFileSync(join(dir, "kiln.config.json"), JSON.stringify(config));
  return dir;
}

beforeAll(async () => {
  registry = await startRegistry();
  process.env.KILN_LOCK_DIR = join(scratch, "locks");
  mkdirSync(process.env.KILN_LOCK_DIR, { mode: 0o700 });
});
afterAll(async () => {
  await registry?.stop();
  rmSync(scratch, { recursive: true, force: true });
});
afterEach(() => {
  init({});
  delete process.env.KILN_LOCK_PROVIDER;
  delete process.env.KILN_CHECK_CACHE;
});

describe("discovery and selection of lock providers and check caches", () => {
  it("discovers kiln.lockProviders / kiln.checkCaches, loads them lazily and names a wrong shape", async () => {
    const discovery = discoverPlugins(projectWith());
    expect(discovery.lockProviders.map((p) => p.name).sort()).toEqual(["broken", "mem"]);
    expect(discovery.checkCaches.map((p) => p.name)).toEqual(["mem"]);
    expect(discovery.problems).toEqual([]);
    const provider = await loadLockProvider(discovery, "mem");
    expect((await provider.acquire({ key: "k", image: "i" })).holder).toBe("memory/1");
    expect(typeof (await loadCheckCache(discovery, "mem")).lookup).toBe("function");
    const wrong = await loadLockProvider(discovery, "broken").catch((e: unknown) => e);
    expect(PluginLoadError.isInstance(wrong)).toBe(true);
    expect((wrong as Error).message).toMatch(/wrong shape: expected a LockProvider/);
    const missing = await loadCheckCache(discovery, "redis").catch((e: unknown) => e);
    expect((missing as Error).message).toMatch(/No installed plugin provides the check cache "redis"; available: mem/);
  });

  it("`kiln plugins --json` lists them, with the configured names", async () => {
    const dir = projectWith({ lockProvider: "mem", checkCache: "mem" });
    let out = "";
    const context = {
      signal: new AbortController().signal,
      stdout: { write: (t: string) => (out += t) },
      stderr: { write: () => true },
      interactive: false,
      json: true,
    } as unknown as CommandContext;
    // The fixture's "broken" lock provider is a problem `kiln plugins` reports (exit 1).
    expect(await pluginsCommand(["--json", "--project", dir], context)).toBe(1);
    const listed = JSON.parse(out);
    expect(listed.lockProviders.map((p: { name: string }) => p.name).sort()).toEqual(["broken", "mem"]);
    expect(listed.checkCaches).toMatchObject([
      { name: "mem", package: "kiln-fixture-coordination", version: "1.0.0", entry: "./lib/index.js#MemoryCheckCache" },
    ]);
    expect(listed.problems).toMatchObject([{ kind: "lockProvider", name: "broken", message: expect.stringMatching(/wrong shape: expected a LockProvider/) }]);
    expect(listed.config).toMatchObject({ lockProvider: "mem", checkCache: "mem" });
  });

  it("precedence: build() option › init() › KILN_LOCK_PROVIDER / KILN_CHECK_CACHE › config file › file / none", async () => {
    const bare = projectWith();
    const configured = projectWith({ lockProvider: "mem", checkCache: "mem" });
    const mine: LockProvider = {
      name: "mine",
      acquire: async () => {
        throw new Error("unused");
      },
    };
    const myCache = { name: "my-cache" } as unknown as CheckCache;

    expect(await selectLockProvider(undefined, bare, loadConfig(bare))).toMatchObject({ name: "file", provider: undefined, source: "default" });
    expect(await selectCheckCache(undefined, bare, loadConfig(bare))).toBeUndefined();
    expect(await selectLockProvider(undefined, configured, loadConfig(configured))).toMatchObject({ name: "mem", source: "config" });
    expect(await selectCheckCache(undefined, configured, loadConfig(configured))).toMatchObject({ name: "mem", source: "config" });

    process.env.KILN_LOCK_PROVIDER = "file";
    process.env.KILN_CHECK_CACHE = "none";
    expect(await selectLockProvider(undefined, configured, loadConfig(configured))).toMatchObject({ name: "file", source: "env" });
    expect(await selectCheckCache(undefined, configured, loadConfig(configured))).toBeUndefined();

    init({ lockProvider: "mem", checkCache: "mem", projectDir: configured });
    expect(await selectLockProvider(undefined, configured, loadConfig(configured))).toMatchObject({ name: "mem", source: "init" });
    expect(await selectCheckCache(undefined, configured, loadConfig(configured))).toMatchObject({ name: "mem", source: "init" });

    expect(await selectLockProvider(mine, configured, loadConfig(configured))).toMatchObject({ name: "mine", provider: mine, source: "option" });
    expect(await selectCheckCache(myCache, configured, loadConfig(configured))).toMatchObject({ name: "my-cache", cache: myCache, source: "option" });
    // One instance per project and name: one connection per process however many builds.
    expect((await selectLockProvider("mem", configured, loadConfig(configured))).provider).toBe(
      (await selectLockProvider("mem", configured, loadConfig(configured))).provider,
    );
  });

  it("config file keys lockProvider / checkCache are validated; init() rejects a non-provider", () => {
    const dir = projectWith({ lockProvider: 3 });
    expect(() => loadConfig(dir)).toThrow(/Invalid lockProvider "3" in .*kiln\.config\.json: expected a lock provider name/);
    expect(() => init({ checkCache: { lookup: 1 } as never })).toThrow(ConfigError);
  });
});

// ---- the engine's order, with in-memory providers ---------------------------------------------------

const keyText = (k: CheckCacheKey) => JSON.stringify([k.repository, k.tag, [...k.platforms].sort()]);

/** A CheckCache in memory; `stored` is the raw map so tests can plant entries (fresh, stale, absent). */
class MemoryCache implements CheckCache {
  readonly name = "memory";
  readonly stored = new Map<string, CachedCheck>();
  readonly calls: string[] = [];
  async lookup(key: CheckCacheKey) {
    this.calls.push("lookup");
    return { entry: this.stored.get(keyText(key)) ?? null, claimed: false };
  }
  async putPresent(key: CheckCacheKey, value: { uri: string; digest: string }) {
    this.calls.push("putPresent");
    this.stored.set(keyText(key), { state: "present", ...value, ageMs: 0, stale: false });
  }
  async putAbsent(key: CheckCacheKey) {
    this.calls.push("putAbsent");
    this.stored.set(keyText(key), { state: "absent", ageMs: 0 });
  }
  async invalidate(key: CheckCacheKey) {
    this.calls.push("invalidate");
    this.stored.delete(keyText(key));
  }
  async releaseClaim() {
    this.calls.push("releaseClaim");
  }
}

/** A builder whose checker asks the real registry (counting), and whose build "pushes" with pushTestImage after beforePush. */
class RegistryBackedBuilder implements ImageBuilder {
  checks = 0;
  builds = 0;
  pushes = 0;
  seen: BuildImageOptions[] = [];
  constructor(private readonly onBuild?: (options: BuildImageOptions) => Promise<void>) {}
  getCheckers() {
    return [
      {
        name: "registry",
        imageExists: async (repository: string, tag: string, arch?: readonly string[]) => {
          this.checks++;
          return (await checkImage(`${repository}:${tag}`, { platforms: arch ?? [] })).present ? `${repository}:${tag}` : null;
        },
      },
    ];
  }
  async buildImage(image: Image, options: BuildImageOptions): Promise<ImageBuild> {
    this.builds++;
    this.seen.push(options);
    await this.onBuild?.(options);
    await options.beforePush?.();
    this.pushes++;
    const pushed = await pushTestImage(registry, image.name, image.tag, "docker-v2");
    return { uri: image.uri, digest: pushed.digest };
  }
}

const imageNamed = (name: string) => Image.fromBase("busybox:1.36", { registry: registry.host, name }).withCommands(`echo ${name}`);
const collect = () => {
  const events: BuildEvent[] = [];
  return { events, onEvent: (e: BuildEvent) => events.push(e) };
};
const BOGUS = `sha256:${"0".repeat(64)}`;

describe("the engine with a shared check cache", () => {
  it("a miss is checked once and remembered with its digest; then a fresh entry answers with no checker at all", async () => {
    const image = imageNamed("coord/present");
    const pushed = await pushTestImage(registry, "coord/present", image.tag, "docker-v2");
    const cache = new MemoryCache();
    const builder = new RegistryBackedBuilder();
    const first = await build(image, { builder, checkCache: cache, dryRun: true });
    expect(first).toMatchObject({ outcome: "found", digest: pushed.digest });
    expect(builder.checks).toBe(1);
    expect(cache.calls).toEqual(["lookup", "putPresent"]);

    const { events, onEvent } = collect();
    const second = await build(image, { builder, checkCache: cache, onEvent });
    expect(second).toMatchObject({ outcome: "found", digest: pushed.digest, foundBy: "cache:memory" });
    expect(builder.checks).toBe(1); // no registry check
    expect(events.filter((e) => e.type === "cache.result")).toMatchObject([{ result: "hit", digest: pushed.digest }]);
    expect(builder.builds).toBe(0);
  });

  it("an entry older than its TTL is re-verified with one HEAD: a digest the registry lacks is dropped and the checkers decide", async () => {
    const image = imageNamed("coord/poisoned");
    const pushed = await pushTestImage(registry, "coord/poisoned", image.tag, "docker-v2");
    const cache = new MemoryCache();
    const key = keyText({ repository: `${registry.host}/coord/poisoned`, tag: image.tag, platforms: ["linux/amd64"] });
    cache.stored.set(key, { state: "present", uri: image.uri, digest: BOGUS, ageMs: 3_600_000, stale: true });
    const builder = new RegistryBackedBuilder();
    const { events, onEvent } = collect();
    const result = await build(image, { builder, checkCache: cache, onEvent });
    expect(result).toMatchObject({ outcome: "found", digest: pushed.digest });
    expect(events.filter((e) => e.type === "cache.result").map((e) => (e as { result: string }).result)).toEqual(["invalid"]);
    expect(builder.checks).toBe(1);
    expect(cache.stored.get(key)).toMatchObject({ state: "present", digest: pushed.digest });

    // A stale entry whose digest exists is confirmed without the checkers.
    cache.stored.set(key, { state: "present", uri: image.uri, digest: pushed.digest, ageMs: 3_600_000, stale: true });
    const again = collect();
    expect(await build(image, { builder, checkCache: cache, onEvent: again.onEvent })).toMatchObject({ outcome: "found", digest: pushed.digest });
    expect(again.events.filter((e) => e.type === "cache.result").map((e) => (e as { result: string }).result)).toEqual(["verified"]);
    expect(builder.checks).toBe(1);
  });

  it("a cached 'absent' skips the check before the lock (and answers a dry run) but never the one under it; the pushed digest is remembered", async () => {
    const image = imageNamed("coord/absent");
    const cache = new MemoryCache();
    const key = keyText({ repository: `${registry.host}/coord/absent`, tag: image.tag, platforms: ["linux/amd64"] });
    cache.stored.set(key, { state: "absent", ageMs: 100 });
    const builder = new RegistryBackedBuilder();
    expect(await build(image, { builder, checkCache: cache, dryRun: true })).toMatchObject({ outcome: "would-build" });
    expect(builder.checks).toBe(0);

    const { events, onEvent } = collect();
    const result = await build(image, { builder, checkCache: cache, onEvent });
    expect(result.outcome).toBe("built");
    const kinds = events.map((e) => e.type);
    expect(kinds.indexOf("cache.result")).toBeLessThan(kinds.indexOf("check.start"));
    expect(builder.checks).toBe(1); // only under the lock
    expect(cache.stored.get(key)).toMatchObject({ state: "present", digest: result.digest });
  });
});

/** A lock provider whose lease the test controls. */
class ScriptedLockProvider implements LockProvider {
  readonly name = "scripted";
  acquired = 0;
  renewals = 0;
  released = 0;
  constructor(
    private readonly script: { fencingToken?: number; leaseMs?: number; renew?: (n: number) => Promise<boolean>; acquire?: (n: number) => Promise<void> } = {},
  ) {}
  async acquire(_request: LeaseRequest): Promise<Lease> {
    this.acquired++;
    await this.script.acquire?.(this.acquired);
    return {
      fencingToken: (this.script.fencingToken ?? 40) + this.acquired,
      waited: false,
      holder: "test/1",
      leaseMs: this.script.leaseMs ?? 30_000,
      renew: () => {
        this.renewals++;
        return this.script.renew?.(this.renewals) ?? Promise.resolve(true);
      },
      release: async () => void this.released++,
    };
  }
}

describe("the engine with a shared lock provider", () => {
  it("hands the builder the fencing token and a beforePush; a lost lease pushes nothing and the build starts over, finding the new holder's image", async () => {
    const image = imageNamed("coord/lost");
    let otherDigest = "";
    const provider = new ScriptedLockProvider({
      // The renewal before our push finds the lease gone: meanwhile another host took over and pushed.
      renew: async () => {
        otherDigest = (await pushTestImage(registry, "coord/lost", image.tag, "oci")).digest;
        return false;
      },
    });
    const builder = new RegistryBackedBuilder();
    const { events, onEvent } = collect();
    const result = await build(image, { builder, lockProvider: provider, onEvent });
    expect(builder.seen[0]?.fencingToken).toBe(41);
    expect(builder.builds).toBe(1);
    expect(builder.pushes).toBe(0);
    expect(result).toMatchObject({ outcome: "found", digest: otherDigest });
    expect(events.some((e) => e.type === "lock.lost")).toBe(true);
    expect(events.some((e) => e.type === "warning" && /lost before the push.*starting over/.test(e.message))).toBe(true);
    expect(provider.released).toBe(provider.acquired);
  });

  it("renews the lease every third of its length while the builder works", async () => {
    const provider = new ScriptedLockProvider({ leaseMs: 600 });
    const builder = new RegistryBackedBuilder(() => new Promise((r) => setTimeout(r, 1_000)));
    const result = await build(imageNamed("coord/renewed"), { builder, lockProvider: provider });
    expect(result.outcome).toBe("built");
    expect(provider.renewals).toBeGreaterThanOrEqual(3); // ~5 timer renewals + the one before the push
    expect(builder.pushes).toBe(1);
  });

  it("an unreachable provider: the per-host lock with a warning — or, in strict mode, CoordinationUnavailableError and nothing built", async () => {
    const down = new ScriptedLockProvider({
      acquire: async () => {
        throw new CoordinationUnavailableError("Redis at redis://127.0.0.1:1/0: taking the build lease failed: connect ECONNREFUSED");
      },
    });
    const builder = new RegistryBackedBuilder();
    const { events, onEvent } = collect();
    expect((await build(imageNamed("coord/fallback"), { builder, lockProvider: down, onEvent })).outcome).toBe("built");
    expect(events.find((e) => e.type === "warning")).toMatchObject({
      message: expect.stringMatching(/scripted lock provider is unreachable .*falling back to the per-host lock/),
    });
    expect(events.find((e) => e.type === "lock.acquired")).toMatchObject({ provider: "file", fallback: true });

    const strictBuilder = new RegistryBackedBuilder();
    const failure = await build(imageNamed("coord/strict"), { builder: strictBuilder, lockProvider: down, strict: true }).catch((e: unknown) => e);
    expect(CoordinationUnavailableError.isInstance(failure)).toBe(true);
    expect(strictBuilder.builds).toBe(0);
  });
});

describe("in-process sharing of builds with coordination", () => {
  it("concurrent build() calls with different check caches or lock providers never share one build", async () => {
    const image = imageNamed("coord/separate");
    const builder = new RegistryBackedBuilder();
    // One cache knows the image, the other does not: each call must get its own cache's answer.
    const knows = new MemoryCache();
    const empty = new MemoryCache();
    knows.stored.set(keyText({ repository: `${registry.host}/coord/separate`, tag: image.tag, platforms: ["linux/amd64"] }), {
      state: "present",
      uri: image.uri,
      digest: BOGUS,
      ageMs: 0,
      stale: false,
    });
    const [fromKnown, fromEmpty] = await Promise.all([
      build(image, { builder, checkCache: knows, dryRun: true }),
      build(image, { builder, checkCache: empty, dryRun: true }),
    ]);
    expect(fromKnown).toMatchObject({ outcome: "found", foundBy: "cache:memory", digest: BOGUS });
    expect(fromEmpty).toMatchObject({ outcome: "would-build" });
    expect(empty.calls[0]).toBe("lookup");
    expect(buildKey(image, { checkCache: knows })).toBe(buildKey(image, { checkCache: knows })); // the same choices still share
    expect(buildKey(image, { lockProvider: "redis" })).not.toBe(buildKey(image, { lockProvider: "file" }));

    // Two lock providers: each build takes its lease from its own.
    const other = imageNamed("coord/separate-lock");
    const first = new ScriptedLockProvider();
    const second = new ScriptedLockProvider();
    const results = await Promise.all([build(other, { builder, lockProvider: first }), build(other, { builder, lockProvider: second })]);
    expect(results.map((r) => r.outcome).sort()).toEqual(expect.arrayContaining(["built"]));
    expect([first.acquired, second.acquired]).toEqual([1, 1]);
  });
});

describe("LeaseKeeper.beforePush", () => {
  it("pushes under a lease it cannot confirm only while that lease is still valid, then refuses with LeaseLostError", async () => {
    const events: BuildEvent[] = [];
    const lease: Lease = {
      fencingToken: 9,
      waited: false,
      holder: "h/1",
      leaseMs: 1_000,
      renew: async () => {
        throw new Error("connect ECONNREFUSED");
      },
      release: async () => {},
    };
    const keeper = new LeaseKeeper(lease, { provider: "redis", image: "img", onEvent: (e) => events.push(e) });
    await expect(keeper.beforePush()).resolves.toBeUndefined();
    expect(events.map((e) => (e as { message?: string }).message)).toContainEqual(expect.stringMatching(/still valid for \d+ ms, pushing/));
    await new Promise((r) => setTimeout(r, 1_000));
    const refused = await keeper.beforePush().catch((e: unknown) => e);
    expect(LeaseLostError.isInstance(refused)).toBe(true);
    expect(events.some((e) => e.type === "lock.lost")).toBe(true);
    await keeper.release();
  });
});
