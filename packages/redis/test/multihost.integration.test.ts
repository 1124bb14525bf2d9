/**
 * Many machines, one build — with real `kiln build` processes spread over simulated hosts (UTS
 * namespaces with their own hostnames and per-host lock directories; see hosts.ts), the real Docker
 * builder, a real registry behind a counting proxy, and a real redis-server:
 *  - 20 processes on 4 hosts → exactly one build and one push;
 *  - kill -9 of the holder mid-build → another host takes over within the lease; one push;
 *  - Redis stopped mid-run → per-host fallback with warnings (or, strict, failure and no push); never a hang;
 *  - Redis with an ACL password over TLS;
 *  - a poisoned cache entry (a digest that does not exist) is caught by the re-verify and ignored.
 */
import { writeFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { RegistryClient } from "@kiln/core";
import {
  DockerCleanup,
  ensureBusyboxImage,
  pushSteps,
  startPushFaultProxy,
  startRedis,
  startRegistry,
  uniqueName,
  type PushFaultProxy,
  type TestRedis,
  type TestRegistry,
} from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeSharedConnections } from "../src/connection.js";
import { RedisCheckCache } from "../src/index.js";
import { installedProjectWhenBuilt, runOnHost, type HostRun, type KilnEvent, type StartedRun } from "./hosts.js";

let busybox: string;
let registry: TestRegistry;
let proxy: PushFaultProxy;
let redis: TestRedis;
let project: { project: string; cli: string };
const cleanup = new DockerCleanup();
const HOSTS = ["kiln-host-a", "kiln-host-b", "kiln-host-c", "kiln-host-d"];
/** The lease where it is the point (kill -9, outage); elsewhere a longer one, so a loaded machine cannot expire it. */
const LEASE_MS = 3_000;
const CALM_LEASE_MS = 20_000;

beforeAll(async () => {
  busybox = await ensureBusyboxImage();
  registry = await startRegistry();
  proxy = await startPushFaultProxy(registry.url);
  redis = await startRedis({ password: "multi-host-pw-31f" });
  project = await installedProjectWhenBuilt("kiln-multihost-");
  // One image per test: its name and the length of its RUN step come from the environment.
  writeFileSync(
    join(project.project, "spec.mjs"),
    [
      `import { Image } from "@kiln/core";`,
      `export default Image.fromBase(${JSON.stringify(busybox)}, { registry: process.env.TEST_REGISTRY, name: process.env.TEST_NAME })`,
      `  .withCommands(\`echo kiln-step-start && sleep \${process.env.TEST_SLEEP} && echo \${process.env.TEST_NAME} > /n.txt\`);`,
    ].join("\n"),
  );
});
afterAll(async () => {
  await closeSharedConnections();
  await cleanup.run();
  await proxy?.stop();
  await registry?.stop();
  await redis?.stop();
  if (project) rmSync(project.project, { recursive: true, force: true });
});

function baseEnv(name: string, sleepSeconds: number, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    TEST_REGISTRY: proxy.host,
    TEST_NAME: name,
    TEST_SLEEP: String(sleepSeconds),
    DOCKER_CONFIG: "/nonexistent",
    DOCKER_BUILDKIT: "0",
    KILN_LOCK_PROVIDER: "redis",
    KILN_CHECK_CACHE: "redis",
    KILN_REDIS_URL: redis.url,
    KILN_REDIS_LEASE_MS: String(LEASE_MS),
    KILN_STRICT: "0",
    ...extra,
  };
}

/** `count` processes of `kiln build spec.mjs --json`, round-robin over the hosts. */
function buildOnHosts(count: number, env: NodeJS.ProcessEnv, onEvent?: (event: KilnEvent, run: StartedRun) => void): StartedRun[] {
  return Array.from({ length: count }, (_, i) =>
    runOnHost(HOSTS[i % HOSTS.length]!, project, ["build", "spec.mjs", "--json"], { env, timeoutMs: 150_000, onEvent }),
  );
}

const builds = (runs: HostRun[]) => runs.flatMap((r) => r.events).filter((e) => e.type === "build.start" && !e.dryRun).length;
const manifestPuts = (name: string) => proxy.requests.filter((r) => pushSteps.manifestPut(r) && r.path.startsWith(`/v2/${name}/manifests/`)).length;
const registryDigest = async (uri: string) => (await new RegistryClient({ useDockerConfig: false }).headManifest(uri))?.digest;
/** What went on in each process, for a failing assertion's message. */
const diagnose = (runs: HostRun[]) =>
  runs
    .map((r) => {
      const notable = r.events
        .filter((e) => ["warning", "lock.lost", "lock.acquired", "build.start", "error", "cache.result"].includes(e.type))
        .map(
          (e) =>
            `${e.type}${e.result ? `:${e.result}` : ""}${e.provider ? `:${e.provider}` : ""}${e.message ? ` ${e.message}` : ""}${e.error ? ` ${e.error.message}` : ""}`,
        );
      return `[${r.host} code=${r.code} signal=${r.signal}] ${notable.join(" | ")}`;
    })
    .join("\n");

describe("one build across hosts, coordinated through Redis", () => {
  let firstImage: { name: string; uri: string; digest: string };

  it("20 kiln build processes on 4 hosts: exactly one build and one push; all print the URI and digest the registry holds", async () => {
    const name = uniqueName("kiln-mh-twenty");
    const runs = await Promise.all(buildOnHosts(20, baseEnv(name, 2, { KILN_REDIS_LEASE_MS: String(CALM_LEASE_MS) })).map((r) => r.done));
    expect(
      runs.map((r) => r.code),
      diagnose(runs),
    ).toEqual(Array(20).fill(0));
    const uris = new Set(runs.map((r) => r.stdout.trim()));
    expect(uris.size).toBe(1);
    const uri = [...uris][0]!;
    cleanup.image(uri);
    expect(builds(runs), diagnose(runs)).toBe(1);
    expect(manifestPuts(name)).toBe(1);
    const digest = (await registryDigest(uri))!;
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(runs.map((r) => r.events.find((e) => e.type === "done")?.digest)).toEqual(Array(20).fill(digest));
    // The lease names its holder by the namespace's hostname: these really were four hosts.
    const holder = runs.flatMap((r) => r.events).find((e) => e.type === "lock.wait" && e.holder)?.holder as string | undefined;
    expect(holder).toMatch(/^kiln-host-[a-d]\/\d+$/);
    const waitedOn = new Set(runs.filter((r) => r.events.some((e) => e.type === "lock.wait")).map((r) => r.host));
    expect(waitedOn.size).toBeGreaterThan(1);
    firstImage = { name, uri, digest };

    // The holder put the digest in the cache: a further build asks the registry nothing at all.
    const before = proxy.requests.length;
    const again = await runOnHost(HOSTS[0]!, project, ["build", "spec.mjs", "--json"], { env: baseEnv(name, 2), timeoutMs: 60_000 }).done;
    expect(again.code, again.stderr).toBe(0);
    expect(again.events.find((e) => e.type === "cache.result")).toMatchObject({ result: "hit", digest });
    expect(proxy.requests.slice(before).filter((r) => r.path.startsWith(`/v2/${name}/`))).toEqual([]);
    console.info(`[redis] 20 processes on 4 hosts: builds=${builds(runs)} manifest PUTs=${manifestPuts(name)} hosts that waited=${waitedOn.size}`);
  }, 200_000);

  it("kill -9 of the holder mid-build: another host takes over within the lease, and the tag is pushed once", async () => {
    const name = uniqueName("kiln-mh-kill");
    let killedAt = 0;
    let killed: StartedRun | undefined;
    const started = buildOnHosts(4, baseEnv(name, 6), (event, run) => {
      if (!killed && event.type === "build.log" && String(event.line).includes("kiln-step-start")) {
        killed = run;
        killedAt = Date.now();
        run.child.kill("SIGKILL");
      }
    });
    const runs = await Promise.all(started.map((r) => r.done));
    expect(killed, diagnose(runs)).toBeDefined();
    const survivors = runs.filter((r) => r.host !== killed!.host);
    expect(runs.find((r) => r.host === killed!.host)?.signal).toBe("SIGKILL");
    expect(
      survivors.map((r) => r.code),
      diagnose(runs),
    ).toEqual([0, 0, 0]);
    const takeover = survivors
      .flatMap((r) => r.events)
      .filter((e) => e.type === "lock.acquired" && e.time > killedAt)
      .sort((a, b) => a.time - b.time)[0];
    expect(takeover, diagnose(runs)).toBeDefined();
    const takeoverMs = takeover!.time - killedAt;
    expect(takeoverMs).toBeLessThan(LEASE_MS + 1_500);
    expect(builds(runs)).toBe(2); // the killed one and the one that took over
    expect(manifestPuts(name)).toBe(1);
    const uri = survivors[0]!.stdout.trim();
    cleanup.image(uri);
    const digest = await registryDigest(uri);
    expect(survivors.map((r) => r.events.find((e) => e.type === "done")?.digest)).toEqual([digest, digest, digest]);
    console.info(`[redis] kill -9 of the holder: takeover after ${takeoverMs} ms (lease ${LEASE_MS} ms), manifest PUTs=${manifestPuts(name)}`);
  }, 200_000);

  for (const strict of [false, true]) {
    it(strict
      ? "Redis stopped mid-run, strict mode: every process fails with KILN_COORDINATION_UNAVAILABLE within seconds, and nothing is pushed"
      : "Redis stopped mid-run: every process falls back to its per-host lock with a warning and finishes; the image is pushed", async () => {
      const name = uniqueName(strict ? "kiln-mh-down-strict" : "kiln-mh-down");
      let stoppedAt = 0;
      let holderHost = "";
      const started = buildOnHosts(8, baseEnv(name, 5, { KILN_STRICT: strict ? "1" : "0" }), (event, run) => {
        if (!stoppedAt && event.type === "build.log" && String(event.line).includes("kiln-step-start")) {
          stoppedAt = Date.now();
          holderHost = run.host;
          void redis.kill();
        }
      });
      const runs = await Promise.all(started.map((r) => r.done));
      await redis.start();
      expect(stoppedAt, diagnose(runs)).toBeGreaterThan(0);
      // Never a hang: each process ends soon after the outage (a lease length plus one build at most).
      for (const run of runs) expect(run.endedAt - stoppedAt, diagnose([run])).toBeLessThan(60_000);
      const holder = runs.find((r) => r.events.some((e) => e.type === "build.log" && String(e.line).includes("kiln-step-start") && e.time <= stoppedAt + 50));
      const waiters = runs.filter((r) => r !== holder && !r.events.some((e) => e.type === "lock.acquired" && e.provider === "redis"));
      expect(waiters.length).toBeGreaterThan(0);
      if (strict) {
        expect(
          runs.map((r) => r.code),
          diagnose(runs),
        ).toEqual(Array(8).fill(1));
        for (const run of runs) expect(run.stderr, diagnose([run])).toContain("KILN_COORDINATION_UNAVAILABLE");
        for (const run of waiters) expect(run.endedAt - stoppedAt).toBeLessThan(10_000);
        expect(manifestPuts(name)).toBe(0);
        expect(holder!.events.some((e) => e.type === "lock.lost")).toBe(true);
      } else {
        expect(
          runs.map((r) => r.code),
          diagnose(runs),
        ).toEqual(Array(8).fill(0));
        for (const run of waiters) {
          expect(
            run.events.some((e) => e.type === "warning" && /redis lock provider is unreachable .*falling back to the per-host lock/.test(e.message)),
            diagnose([run]),
          ).toBe(true);
        }
        const uris = new Set(runs.map((r) => r.stdout.trim()));
        expect(uris.size).toBe(1);
        const uri = [...uris][0]!;
        cleanup.image(uri);
        expect(await registryDigest(uri)).toMatch(/^sha256:/);
        // Degraded, not wrong: at most one push per host, and the holder did not push once its lease had run out.
        expect(holder!.events.some((e) => e.type === "lock.lost")).toBe(true);
        expect(manifestPuts(name)).toBeGreaterThanOrEqual(1);
        expect(manifestPuts(name)).toBeLessThanOrEqual(HOSTS.length);
      }
      console.info(
        `[redis] Redis stopped mid-run (strict=${strict}): holder on ${holderHost}; exits ${runs.map((r) => r.code).join(",")}; manifest PUTs=${manifestPuts(name)}; slowest exit ${Math.max(...runs.map((r) => r.endedAt - stoppedAt))} ms after the stop`,
      );
    }, 200_000);
  }

  it("Redis with an ACL user's password over TLS: one build, one push; no credential in any output; a wrong password only degrades", async () => {
    const secure = await startRedis({ tls: true, aclUser: { username: "kiln-ci", password: "tls-acl-pw-9e7", keyPattern: "kiln:*" } });
    try {
      const name = uniqueName("kiln-mh-tls");
      const env = baseEnv(name, 1, { KILN_REDIS_URL: secure.url, KILN_REDIS_TLS_CA_FILE: secure.caFile!, KILN_REDIS_LEASE_MS: String(CALM_LEASE_MS) });
      const runs = await Promise.all(buildOnHosts(4, env).map((r) => r.done));
      expect(
        runs.map((r) => r.code),
        diagnose(runs),
      ).toEqual([0, 0, 0, 0]);
      expect(builds(runs)).toBe(1);
      expect(manifestPuts(name)).toBe(1);
      const acquired = runs.flatMap((r) => r.events).filter((e) => e.type === "lock.acquired");
      expect(acquired.length).toBeGreaterThanOrEqual(1);
      expect(acquired.every((e) => e.provider === "redis" && !e.fallback)).toBe(true);
      cleanup.image(runs[0]!.stdout.trim());
      for (const run of runs) expect(`${run.stdout}${run.stderr}`).not.toContain("tls-acl-pw-9e7");

      const wrong = await runOnHost(HOSTS[0]!, project, ["build", "spec.mjs", "--json"], {
        env: { ...env, KILN_REDIS_URL: secure.url.replace("tls-acl-pw-9e7", "wrong-pw-0a1") },
        timeoutMs: 60_000,
      }).done;
      expect(wrong.code, wrong.stderr).toBe(0);
      expect(wrong.events.find((e) => e.type === "cache.result")).toMatchObject({ result: "error", message: expect.stringMatching(/WRONGPASS/) });
      expect(`${wrong.stdout}${wrong.stderr}`).not.toMatch(/wrong-pw-0a1|tls-acl-pw-9e7/);
    } finally {
      await secure.stop();
    }
  }, 200_000);

  it("a poisoned cache entry (a digest that does not exist), older than the TTL, is caught by the re-verify HEAD and ignored", async () => {
    const { name, uri, digest } = firstImage;
    const cache = new RedisCheckCache({ env: { KILN_REDIS_URL: redis.url } });
    const [repository, tag] = [uri.slice(0, uri.lastIndexOf(":")), uri.slice(uri.lastIndexOf(":") + 1)];
    const { entry } = cache.keysOf({ repository, tag, platforms: ["linux/amd64"] });
    const poisoned = `sha256:${"6".repeat(64)}`;
    const life = 7 * 24 * 3600_000;
    // Written an hour "ago" (its age is read from its PTTL), so past the 5-minute TTL.
    await redis.cli("SET", entry, JSON.stringify({ v: 1, state: "present", uri, digest: poisoned, life }), "PX", String(life - 3600_000));
    const before = proxy.requests.length;
    const run = await runOnHost(HOSTS[1]!, project, ["build", "spec.mjs", "--json"], { env: baseEnv(name, 2), timeoutMs: 60_000 }).done;
    expect(run.code, run.stderr).toBe(0);
    expect(run.events.filter((e) => e.type === "cache.result").map((e) => e.result)).toEqual(["invalid"]);
    expect(run.events.find((e) => e.type === "done")).toMatchObject({ built: false, digest });
    expect(builds([run])).toBe(0);
    expect(
      proxy.requests
        .slice(before)
        .filter((r) => r.path === `/v2/${name}/manifests/${poisoned}`)
        .map((r) => r.method),
    ).toEqual(["HEAD"]);
    const stored = JSON.parse(await redis.cli("GET", entry));
    expect(stored).toMatchObject({ state: "present", digest });
  }, 120_000);
});
