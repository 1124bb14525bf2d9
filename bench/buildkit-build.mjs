#!/usr/bin/env node
/**
 * BuildKit builder benchmark (issue 14). On the machine's Docker Engine, in the same run, best of RUNS
 * runs each, compared runs interleaved:
 *
 *   A. ~500 MB context (`FROM busybox`, a RUN step, `COPY` of a 500 MB data folder), no cache: the
 *      `buildkit` builder through the engine's /grpc (context through the session's filesync) vs
 *      @kiln/docker's DockerImageBuilder on the same spec (`noCache`, one build).         target ≤ 1.0×
 *   B. `buildkit`: a warm rebuild after editing one source file vs the cold build of the same image
 *      (the daemon keeps the transferred context by the session's shared key).             target ≤ 0.15×
 *   C. with KILN_TEST_BUILDKITD: a second buildkitd with an empty local cache importing the registry
 *      cache the first exported vs its own cold build (a slow RUN step, `cacheFrom`).   target ≤ 0.3×
 *
 * Needs: `pnpm build` (core, docker, buildkit, test-utils sources run through tsx-free dist imports),
 * dockerd, /bin/busybox. Usage: node bench/buildkit-build.mjs [--runs N] [--only A,B,C] [--json]
 */
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const RUNS = Math.max(1, Number(args[args.indexOf("--runs") + 1]) || 2);
const asJson = args.includes("--json");
// `--only A,B`: run only those parts (the others are reported as skipped).
const only = args.includes("--only")
  ? new Set(
      String(args[args.indexOf("--only") + 1])
        .toUpperCase()
        .split(","),
    )
  : undefined;
const wanted = (part) => !only || only.has(part);
const dist = (pkg) => pathToFileURL(path.join(root, `packages/${pkg}/dist/index.js`)).href;
for (const pkg of ["core", "docker", "buildkit"]) {
  if (!existsSync(fileURLToPath(dist(pkg)))) {
    console.error(`missing packages/${pkg}/dist: run \`pnpm build\` first`);
    process.exit(2);
  }
}
const { Image } = await import(dist("core"));
const { DockerImageBuilder } = await import(dist("docker"));
const { BuildKitImageBuilder } = await import(dist("buildkit"));

const work = mkdtempSync("/var/tmp/kiln-bench-buildkit-");
const BUSYBOX = "kiln-bench/busybox:1";
const log = (...m) => !asJson && console.error(...m);
const toRemove = new Set();
const stops = [];

function writeRandomFile(file, bytes) {
  const fd = openSync(file, "w");
  for (let left = bytes; left > 0; left -= 1 << 20) writeSync(fd, randomBytes(Math.min(1 << 20, left)));
  closeSync(fd);
}

async function ensureBusybox() {
  try {
    await run("docker", ["image", "inspect", BUSYBOX]);
  } catch {
    const dir = path.join(work, "busybox");
    mkdirSync(dir, { recursive: true });
    copyFileSync("/bin/busybox", path.join(dir, "busybox"));
    writeFileSync(path.join(dir, "Dockerfile"), 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\nENV PATH=/bin\n');
    await run("docker", ["build", "-q", "-t", BUSYBOX, dir]);
  }
}

async function timed(fn) {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

let serial = 0;
const name = (p) => `kiln-bench-${p}-${process.pid}-${serial++}`;

function bigImage(base, data, src, imageName, extra = {}) {
  const image = Image.fromBase(base, { name: imageName, ...extra })
    .withCommands("echo deps > /deps.txt")
    .withSourceFolder(data, "/data")
    .withSourceFolder(src, "/src");
  toRemove.add(image.uri);
  return image;
}

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startRegistry() {
  const dir = mkdtempSync(path.join(work, "registry-"));
  const port = await freePort();
  writeFileSync(path.join(dir, "config.yml"), `version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: ${dir}/data\nhttp:\n  addr: 127.0.0.1:${port}\n`);
  const child = spawn("/usr/bin/docker-registry", ["serve", path.join(dir, "config.yml")], { stdio: "ignore" });
  stops.push(() => child.kill());
  for (let i = 0; i < 100; i++) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/v2/`);
      if (r.ok) return `127.0.0.1:${port}`;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("registry did not start");
}

async function startBuildkitd(binary, registry) {
  const dir = mkdtempSync("/var/tmp/kiln-bench-buildkitd-");
  const sock = path.join(dir, "bk.sock");
  writeFileSync(
    path.join(dir, "bk.toml"),
    `root = "${dir}/state"\n[grpc]\n  address = ["unix://${sock}"]\n[worker.oci]\n  enabled = true\n[worker.containerd]\n  enabled = false\n[registry."${registry}"]\n  http = true\n  insecure = true\n`,
  );
  const child = spawn(binary, ["--config", path.join(dir, "bk.toml")], { stdio: "ignore" });
  stops.push(async () => {
    child.kill();
    await new Promise((r) => child.once("exit", r));
    rmSync(dir, { recursive: true, force: true });
  });
  for (let i = 0; i < 150 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 200));
  return `unix://${sock}`;
}

const results = {};
try {
  await ensureBusybox();
  const data = path.join(work, "data");
  const src = path.join(work, "src");
  mkdirSync(data);
  mkdirSync(src);
  for (let i = 0; i < 50; i++) writeRandomFile(path.join(data, `blob-${i}.bin`), 10 << 20);
  writeFileSync(path.join(src, "app.py"), "print('v0')\n");

  // A: cold, no cache, same spec.
  if (wanted("A")) {
    const bk = new BuildKitImageBuilder({ noCache: true });
    const dk = new DockerImageBuilder({ noCache: true, incremental: false });
    const a = { buildkit: [], docker: [] };
    for (let i = 0; i < RUNS; i++) {
      a.docker.push(await timed(() => dk.buildImage(bigImage(BUSYBOX, data, src, name("a-docker")), {})));
      a.buildkit.push(await timed(() => bk.buildImage(bigImage(BUSYBOX, data, src, name("a-buildkit")), {})));
      log(`A run ${i + 1}: docker ${a.docker.at(-1).toFixed(0)} ms, buildkit ${a.buildkit.at(-1).toFixed(0)} ms`);
    }
    results.A = { dockerMs: Math.min(...a.docker), buildkitMs: Math.min(...a.buildkit), runs: a };
    results.A.ratio = results.A.buildkitMs / results.A.dockerMs;
    // Each run's pair was built back to back: its ratio is less exposed to load swings than best-of.
    results.A.runRatios = a.buildkit.map((ms, i) => ms / a.docker[i]);
    results.A.medianRunRatio = [...results.A.runRatios].sort((x, y) => x - y)[Math.floor(results.A.runRatios.length / 2)];
  } else results.A = { skipped: "not asked for (--only)" };

  // B: cold vs warm after a one-file edit (same image name → same shared key; cache kept).
  if (wanted("B")) {
    const b = { cold: [], warm: [] };
    for (let i = 0; i < RUNS; i++) {
      const imageName = name("b");
      b.cold.push(await timed(() => new BuildKitImageBuilder({ noCache: true }).buildImage(bigImage(BUSYBOX, data, src, imageName), {})));
      writeFileSync(path.join(src, "app.py"), `print('v${i + 1}')\n`);
      b.warm.push(await timed(() => new BuildKitImageBuilder().buildImage(bigImage(BUSYBOX, data, src, imageName), {})));
      log(`B run ${i + 1}: cold ${b.cold.at(-1).toFixed(0)} ms, warm ${b.warm.at(-1).toFixed(0)} ms`);
    }
    results.B = { coldMs: Math.min(...b.cold), warmMs: Math.min(...b.warm) };
    results.B.ratio = results.B.warmMs / results.B.coldMs;
  } else results.B = { skipped: "not asked for (--only)" };

  // C: registry cache into a second, empty buildkitd.
  const binary = process.env.KILN_TEST_BUILDKITD;
  if (!wanted("C")) results.C = { skipped: "not asked for (--only)" };
  else if (binary && existsSync(binary)) {
    const registry = await startRegistry();
    const base = `${registry}/bench/busybox:1`;
    await run("docker", ["tag", BUSYBOX, base]);
    await run("docker", ["push", base]);
    const c = { cold: [], imported: [] };
    for (let i = 0; i < RUNS; i++) {
      const first = await startBuildkitd(binary, registry);
      const second = await startBuildkitd(binary, registry);
      const slow = (n) => Image.fromBase(base, { registry, name: n }).withCommands("sleep 3 && echo built > /slow.txt").withSourceFolder(src, "/src");
      const n = name("c");
      c.cold.push(await timed(() => new BuildKitImageBuilder({ endpoints: [first], cacheTo: true }).buildImage(slow(n), {})));
      c.imported.push(await timed(() => new BuildKitImageBuilder({ endpoints: [second], cacheFrom: true }).buildImage(slow(n), { force: true })));
      log(`C run ${i + 1}: cold ${c.cold.at(-1).toFixed(0)} ms, second daemon importing ${c.imported.at(-1).toFixed(0)} ms`);
    }
    results.C = { coldMs: Math.min(...c.cold), importedMs: Math.min(...c.imported) };
    results.C.ratio = results.C.importedMs / results.C.coldMs;
  } else results.C = { skipped: "KILN_TEST_BUILDKITD not set" };
} finally {
  for (const stop of stops.reverse()) await stop();
  for (const ref of toRemove) await run("docker", ["rmi", "-f", ref]).catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
}

if (asJson) console.log(JSON.stringify(results, null, 2));
else {
  if (results.A.skipped) console.log(`A. skipped: ${results.A.skipped}`);
  else {
    console.log(
      `A. 500 MB context, no cache: buildkit ${results.A.buildkitMs.toFixed(0)} ms / docker ${results.A.dockerMs.toFixed(0)} ms = ${results.A.ratio.toFixed(2)}× (target ≤ 1.0×)`,
    );
    console.log(`   per run (back to back): ${results.A.runRatios.map((r) => `${r.toFixed(2)}×`).join(", ")}; median ${results.A.medianRunRatio.toFixed(2)}×`);
  }
  if (results.B.skipped) console.log(`B. skipped: ${results.B.skipped}`);
  else
    console.log(
      `B. warm rebuild after a one-file edit: ${results.B.warmMs.toFixed(0)} ms / cold ${results.B.coldMs.toFixed(0)} ms = ${results.B.ratio.toFixed(3)}× (target ≤ 0.15×)`,
    );
  if (results.C.skipped) console.log(`C. skipped: ${results.C.skipped}`);
  else
    console.log(
      `C. second buildkitd importing the registry cache: ${results.C.importedMs.toFixed(0)} ms / its cold ${results.C.coldMs.toFixed(0)} ms = ${results.C.ratio.toFixed(2)}× (target ≤ 0.3×)`,
    );
}
