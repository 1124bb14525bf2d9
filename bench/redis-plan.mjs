#!/usr/bin/env node
/**
 * Shared check cache benchmark (issue 18). In one run, against a real local registry behind a
 * counting proxy and a real redis-server, both started here:
 *
 *   N concurrent `kiln plan` processes (default 100) over the same 20 images (all present,
 *   single-arch, one repository each), with the Docker builder's checkers:
 *     A. without a shared cache (KILN_CHECK_CACHE=none) — today's behaviour;
 *     B. with @kiln/redis's cache, starting empty (single flight: one check per image for everyone);
 *     C. with the cache already filled (within its TTL).
 *   Reported per round: registry requests per image (all of them; the existence checks proper —
 *   manifest GETs by digest, one per check — and the HEADs of the tag: one per check plus one digest
 *   lookup when an answer is cached), the wall time from the first process started to the last one
 *   exited, and the CPU time the `kiln plan` processes used (user + system, from /usr/bin/time).
 *   Targets: B's checks ≤ 1 per image per TTL (A: one per process and image); B's wall time ≤ A's.
 *
 * The registry, the counting proxy (in this process) and Redis stand for services on other machines:
 * they run at a higher CPU priority (nice -5) than the `kiln` processes, so the proxy is not starved
 * by the hundred clients it counts. `--latency-ms N` delays every registry answer by N ms (a remote
 * registry; default 0, a loopback one — the cache's worst case).
 *
 * Needs `pnpm build` (core, docker, redis; they are copied into bench/.work so a concurrent rebuild
 * cannot disturb the run), /usr/bin/docker-registry, /usr/bin/redis-server, /usr/bin/time; root for
 * the priorities (otherwise they stay equal). Usage: node bench/redis-plan.mjs [--processes N] [--latency-ms N] [--json]
 */
import { spawn } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import http from "node:http";
import { cpus, loadavg, setPriority } from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const PROCESSES = Math.max(1, Number(args[args.indexOf("--processes") + 1]) || 100);
const LATENCY_MS = args.includes("--latency-ms") ? Math.max(0, Number(args[args.indexOf("--latency-ms") + 1]) || 0) : 0;
const IMAGES = 20;
const asJson = args.includes("--json");

// An installed project in bench/.work: copies of the built packages, their dependencies linked.
const work = path.join(root, "bench/.work/redis-plan");
rmSync(work, { recursive: true, force: true });
const project = path.join(work, "project");
mkdirSync(project, { recursive: true });
writeFileSync(
  path.join(project, "package.json"),
  JSON.stringify({ name: "bench-redis-plan", private: true, type: "module", dependencies: { "@kiln/core": "*", "@kiln/docker": "*", "@kiln/redis": "*" } }),
);
for (const name of ["core", "docker", "redis"]) {
  const source = path.join(root, "packages", name);
  if (!existsSync(path.join(source, "dist/index.js"))) {
    console.error(`bench/redis-plan.mjs: build the packages first (pnpm build): ${source}/dist is missing`);
    process.exit(2);
  }
  const target = path.join(project, "node_modules/@kiln", name);
  mkdirSync(path.join(target, "node_modules"), { recursive: true });
  cpSync(path.join(source, "package.json"), path.join(target, "package.json"));
  cpSync(path.join(source, "dist"), path.join(target, "dist"), { recursive: true });
  for (const entry of readdirSync(path.join(source, "node_modules"))) {
    if (entry !== "@kiln" && !entry.startsWith("."))
      symlinkSync(realpathSync(path.join(source, "node_modules", entry)), path.join(target, "node_modules", entry));
  }
}
const cli = path.join(project, "node_modules/@kiln/core/dist/cli/main.js");

// The test services are TypeScript: loaded through tsx (a dependency of @kiln/core).
const requireFromCore = createRequire(path.join(root, "packages/core/package.json"));
const { register } = await import(pathToFileURL(path.join(path.dirname(requireFromCore.resolve("tsx/package.json")), "dist/esm/api/index.mjs")).href);
register();
const { startRegistry, pushTestImage } = await import(pathToFileURL(path.join(root, "packages/test-utils/src/registry.ts")).href);
const { startRedis } = await import(pathToFileURL(path.join(root, "packages/test-utils/src/redis.ts")).href);

/**
 * A pass-through HTTP proxy that records every request (method, path): streaming bodies, kept-alive
 * upstream connections, so counting costs the registry as little as possible.
 */
async function startCountingProxy(target) {
  const upstream = new URL(target);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 128 });
  const requests = [];
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method, path: req.url });
    if (LATENCY_MS > 0) setTimeout(() => pass(req, res), LATENCY_MS);
    else pass(req, res);
  });
  const pass = (req, res) => {
    const forward = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: { ...req.headers, host: upstream.host }, agent },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    forward.on("error", () => res.destroy());
    req.pipe(forward);
  };
  server.keepAliveTimeout = 30_000;
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    host: `127.0.0.1:${port}`,
    requests,
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
        agent.destroy();
      }),
  };
}

// The services (and the proxy in this process) first in line for the CPU; every `kiln` process back at 0.
let prioritised = true;
try {
  setPriority(-5);
} catch {
  prioritised = false;
}
const registry = await startRegistry({ auth: "none" });
const proxy = await startCountingProxy(registry.url);
const redis = await startRedis();
try {
  const repositories = Array.from({ length: IMAGES }, (_, i) => `bench/plan-${i}`);
  for (const repository of repositories) await pushTestImage(registry, repository, "v1", "docker-v2");
  writeFileSync(
    path.join(project, "images.mjs"),
    `import { Image } from "@kiln/core";\n` +
      repositories
        .map(
          (repository, i) =>
            `export const image${i} = Image.fromBase("busybox:1.36", { registry: ${JSON.stringify(proxy.host)}, name: ${JSON.stringify(repository)} }).withCommands("true").clone({ tag: "v1" });`,
        )
        .join("\n") +
      "\n",
  );

  /** N concurrent `kiln plan` processes; the registry requests they made and the wall time. */
  const round = async (label, env) => {
    proxy.requests.length = 0;
    const load = loadavg()[0];
    const started = process.hrtime.bigint();
    const exits = await Promise.all(
      Array.from(
        { length: PROCESSES },
        () =>
          new Promise((resolve) => {
            const child = spawn("/usr/bin/time", ["-f", "KILN_BENCH_CPU %U %S", process.execPath, cli, "plan", "images.mjs", "--json"], {
              cwd: project,
              env: { ...process.env, DOCKER_CONFIG: path.join(work, "no-docker-config"), KILN_LOCK_DIR: path.join(work, "locks"), ...env },
              stdio: ["ignore", "pipe", "pipe"],
            });
            let out = "";
            let err = "";
            child.stdout.on("data", (d) => (out += d));
            child.stderr.on("data", (d) => (err += d));
            if (prioritised) {
              try {
                setPriority(child.pid, 0);
              } catch {
                // exited already
              }
            }
            child.on("close", (code) => resolve({ code, out, err }));
          }),
      ),
    );
    const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
    const cpuSeconds = exits.reduce((sum, e) => {
      const m = /KILN_BENCH_CPU ([\d.]+) ([\d.]+)/.exec(e.err);
      return sum + (m ? Number(m[1]) + Number(m[2]) : 0);
    }, 0);
    // A process that could not tell (exit 2: some answer "unknown", e.g. a request deadline passed) is counted, not hidden.
    const unsure = exits.filter((e) => e.code !== 0 || (e.out.match(/"action":"skip"/g)?.length ?? 0) !== IMAGES);
    const unknownRows = exits.reduce((n, e) => n + (e.out.match(/"exists":"unknown"/g)?.length ?? 0), 0);
    const firstReason = unsure.length ? (/"reason":"([^"]*)"/.exec(unsure[0].out)?.[1] ?? unsure[0].err.slice(-300)) : undefined;
    const perImage = repositories.map((repository) => {
      const mine = proxy.requests.filter((r) => r.path.startsWith(`/v2/${repository}/`));
      return {
        requests: mine.length,
        checks: mine.filter((r) => r.method === "GET" && r.path.startsWith(`/v2/${repository}/manifests/sha256:`)).length,
        heads: mine.filter((r) => r.method === "HEAD" && r.path === `/v2/${repository}/manifests/v1`).length,
      };
    });
    const max = (key) => Math.max(...perImage.map((p) => p[key]));
    const total = (key) => perImage.reduce((sum, p) => sum + p[key], 0);
    return {
      label,
      processes: PROCESSES,
      wallMs,
      cpuSeconds,
      loadBefore: load,
      requests: total("requests"),
      requestsPerImageMax: max("requests"),
      checks: total("checks"),
      checksPerImageMax: max("checks"),
      tagHeads: total("heads"),
      tagHeadsPerImageMax: max("heads"),
      processesUnsure: unsure.length,
      unknownAnswers: unknownRows,
      ...(firstReason ? { firstReason } : {}),
    };
  };

  const noCache = await round("A. no shared cache", { KILN_CHECK_CACHE: "none" });
  await redis.cli("FLUSHALL");
  const cacheEnv = { KILN_CHECK_CACHE: "redis", KILN_REDIS_URL: redis.url };
  const cold = await round("B. Redis cache, empty at the start", cacheEnv);
  const warm = await round("C. Redis cache, filled (within its TTL)", cacheEnv);
  const results = {
    machine: `${cpus().length} cores, node ${process.version}`,
    images: IMAGES,
    rounds: [noCache, cold, warm],
    latencyMs: LATENCY_MS,
    servicesPrioritised: prioritised,
    checksPerImageCold: cold.checksPerImageMax,
    requestRatioColdVsNone: cold.requests / noCache.requests,
    wallRatioColdVsNone: cold.wallMs / noCache.wallMs,
    wallRatioWarmVsNone: warm.wallMs / noCache.wallMs,
  };
  if (asJson) console.log(JSON.stringify(results, null, 2));
  else {
    console.log(
      `${PROCESSES} concurrent \`kiln plan\` processes × ${IMAGES} present images — ${results.machine}; registry latency ${LATENCY_MS} ms; services prioritised: ${prioritised}`,
    );
    console.log(
      "| round | wall time | CPU of the kiln processes | registry requests (max per image) | checks = manifest GETs (max per image) | tag HEADs (max per image) | processes that could not tell (unknown answers) | load before |",
    );
    console.log("|---|---|---|---|---|---|---|---|");
    for (const r of results.rounds) {
      console.log(
        `| ${r.label} | ${(r.wallMs / 1000).toFixed(1)} s | ${r.cpuSeconds.toFixed(1)} s | ${r.requests} (${r.requestsPerImageMax}) | ${r.checks} (${r.checksPerImageMax}) | ${r.tagHeads} (${r.tagHeadsPerImageMax}) | ${r.processesUnsure} (${r.unknownAnswers}) | ${r.loadBefore.toFixed(1)} |`,
      );
    }
    for (const r of results.rounds) if (r.firstReason) console.log(`${r.label}: first "unknown" reason: ${r.firstReason}`);
    console.log(`checks per image with the cache (cold): ${results.checksPerImageCold} (target ≤ 1; without: ${noCache.tagHeadsPerImageMax})`);
    console.log(`registry requests, cold cache / no cache: ${results.requestRatioColdVsNone.toFixed(3)}×`);
    console.log(
      `wall time, cold cache / no cache: ${results.wallRatioColdVsNone.toFixed(2)}× (target ≤ 1.0×); warm / no cache: ${results.wallRatioWarmVsNone.toFixed(2)}×`,
    );
  }
} finally {
  await redis.stop();
  await proxy.stop();
  await registry.stop();
}
