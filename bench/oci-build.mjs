#!/usr/bin/env node
/**
 * oci builder benchmark (issue 13). In one run, on this machine's Docker Engine and Debian's
 * docker-registry (a fresh, empty registry per measured build, so every build pushes everything it
 * has to), runs interleaved, best of RUNS:
 *
 *   A. cold build + push of a copy-only image — busybox base + 500 MB in 100 files + a small app
 *      folder — by the oci builder (empty layer cache, which this build fills) vs the Docker builder (`noCache: true`,
 *      BuildKit, push by the daemon) on the same spec and registry kind.              target ≤ 0.5×
 *   B. after a one-file edit of the app folder, rebuild + push to the registry holding the previous
 *      build: oci (layer-digest cache) vs the Docker builder's incremental rebuild.
 *                                                                target ≤ 1 s and ≤ 0.25× docker
 *   C. peak RSS (VmHWM) of the process building and pushing one 2 GB layer (random bytes, so the
 *      gzip'd layer is 2 GB too) with the oci builder.                               target < 200 MB
 *
 * Each build runs in its own node process (module loading included), timed from its start to the
 * pushed digest. Needs: `pnpm --filter @kiln/core build && pnpm --filter @kiln/oci build &&
 * pnpm --filter @kiln/docker build`; dockerd; /usr/bin/docker-registry; /bin/busybox.
 * Usage: node bench/oci-build.mjs [--runs N] [--json] [--skip-rss | --rss-only]
 */
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const RUNS = Math.max(1, Number(args[args.indexOf("--runs") + 1]) || 1);
const asJson = args.includes("--json");
const skipRss = args.includes("--skip-rss");
const rssOnly = args.includes("--rss-only");
const dist = (pkg) => pathToFileURL(path.join(root, `packages/${pkg}/dist/index.js`)).href;
for (const pkg of ["core", "oci", "docker"]) {
  if (!existsSync(fileURLToPath(dist(pkg)))) {
    console.error(`missing packages/${pkg}/dist: run \`pnpm --filter @kiln/${pkg} build\` first`);
    process.exit(2);
  }
}
const log = (...m) => !asJson && console.error(...m);
const work = path.join("/var/tmp", `kiln-bench-oci-${process.pid}`);
const BUSYBOX = "kiln-bench/busybox:1";
const registries = [];
const localTags = new Set();

function writeRandomFile(file, bytes) {
  const fd = openSync(file, "w");
  const chunk = 1 << 20;
  for (let left = bytes; left > 0; left -= chunk) writeSync(fd, randomBytes(Math.min(chunk, left)));
  closeSync(fd);
}

async function ensureBusybox() {
  try {
    await run("docker", ["image", "inspect", BUSYBOX]);
    return;
  } catch {}
  const dir = path.join(work, "busybox-root");
  mkdirSync(path.join(dir, "bin"), { recursive: true });
  await run("cp", ["/bin/busybox", path.join(dir, "bin/busybox")]);
  await run("sh", [
    "-c",
    `cd ${dir}/bin && for a in sh cat ls wc; do ln -s busybox $a; done && cd ${dir} && tar -c . | docker import -c 'CMD ["sh"]' - ${BUSYBOX}`,
  ]);
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const port = s.address().port;
      s.close(() => resolve(port));
    });
  });
}

/** A fresh Debian docker-registry with the busybox base pushed into it. */
async function startRegistry() {
  const dir = path.join(work, `registry-${registries.length}`);
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  writeFileSync(
    path.join(dir, "config.yml"),
    `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${dir}/data\nhttp:\n  addr: ${host}\n`,
  );
  const child = spawn("/usr/bin/docker-registry", ["serve", path.join(dir, "config.yml")], { stdio: "ignore" });
  const registry = { host, child, dir };
  registries.push(registry);
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      if ((await fetch(`http://${host}/v2/`)).ok) break;
    } catch {}
    if (Date.now() > deadline) throw new Error("registry did not start");
    await new Promise((r) => setTimeout(r, 50));
  }
  registry.base = `${host}/bench/busybox:1`;
  await run("docker", ["tag", BUSYBOX, registry.base]);
  await run("docker", ["push", registry.base]);
  localTags.add(registry.base);
  return registry;
}

function stopRegistry(registry) {
  registry.child.kill("SIGKILL");
  rmSync(registry.dir, { recursive: true, force: true });
}

/** One build in its own node process; returns { ms, digest, hwmKb }. */
function buildInChild({ builder, base, registry, name, src, cacheDir, noCache = false }) {
  const script = `
    import { readFileSync } from "node:fs";
    const t0 = performance.now();
    const { Image } = await import(${JSON.stringify(dist("core"))});
    const image = Image.fromBase(${JSON.stringify(base)})
      .withSourceFolder(${JSON.stringify(path.join(src, "data"))}, "/data")
      .withSourceFolder(${JSON.stringify(path.join(src, "app"))}, "/app")
      .clone({ registry: ${JSON.stringify(registry)}, name: ${JSON.stringify(name)}, platform: ["linux/amd64"] });
    let built;
    if (${JSON.stringify(builder)} === "oci") {
      const { OciImageBuilder } = await import(${JSON.stringify(dist("oci"))});
      built = await new OciImageBuilder({ layerCache: ${cacheDir ? JSON.stringify(cacheDir) : "false"} }).buildImage(image, {});
    } else {
      const { DockerImageBuilder } = await import(${JSON.stringify(dist("docker"))});
      built = await new DockerImageBuilder({ noCache: ${noCache} }).buildImage(image, {});
    }
    const ms = performance.now() - t0;
    const hwmKb = Number(/VmHWM:\\s+(\\d+)/.exec(readFileSync("/proc/self/status", "utf8"))[1]);
    console.log(JSON.stringify({ ms, digest: built.digest, uri: built.uri, hwmKb }));
  `;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
      env: { ...process.env, XDG_CACHE_HOME: path.join(work, "xdg") },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (c) => (out += c));
    child.stderr.on("data", (c) => (err += c));
    child.on("close", (code) => {
      if (code !== 0) return reject(new Error(`${builder} build failed (${code}): ${err.slice(-2000)}`));
      const result = JSON.parse(out.trim().split("\n").pop());
      if (builder === "docker") localTags.add(result.uri);
      resolve(result);
    });
  });
}

const min = (xs) => Math.min(...xs);
const loadavg = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
const fmt = (ms) => `${(ms / 1000).toFixed(2)} s`;

async function main() {
  mkdirSync(work, { recursive: true });
  await ensureBusybox();
  const src = path.join(work, "src");
  mkdirSync(path.join(src, "data"), { recursive: true });
  mkdirSync(path.join(src, "app"), { recursive: true });
  if (!rssOnly) log("writing 500 MB in 100 files...");
  for (let i = 0; i < (rssOnly ? 0 : 100); i++) writeRandomFile(path.join(src, "data", `blob-${String(i).padStart(3, "0")}.bin`), 5 * 1024 * 1024);
  writeFileSync(path.join(src, "app", "main.sh"), "echo v0\n");
  // The sources' dirty pages reach the disk now, not during the first measured build.
  await run("sync");
  const { stdout: load } = await run("cat", ["/proc/loadavg"]);
  log(`load average at start: ${load.trim()}`);

  const result = { runs: RUNS, loadAverage: load.trim().split(" ").slice(0, 3).join(" "), A: { oci: [], docker: [] }, B: { oci: [], docker: [] } };
  for (let r = 0; r < (rssOnly ? 0 : RUNS); r++) {
    // A: cold — fresh registry each, no layer cache, docker with noCache.
    for (const builder of ["oci", "docker"]) {
      writeFileSync(path.join(src, "app", "main.sh"), `echo cold ${r} ${builder}\n`);
      const registry = await startRegistry();
      const cacheDir = builder === "oci" ? path.join(work, `layer-cache-${r}`) : undefined;
      const loadBefore = loadavg();
      const cold = await buildInChild({ builder, base: registry.base, registry: registry.host, name: `bench/${builder}`, src, cacheDir, noCache: true });
      result.A[builder].push(cold.ms);
      (result.A.load ??= []).push({ run: r + 1, builder, before: loadBefore, after: loadavg() });
      log(`A ${builder} cold build+push: ${fmt(cold.ms)} (peak RSS ${(cold.hwmKb / 1024).toFixed(0)} MB; load ${loadBefore} → ${loadavg()})`);
      // B: one-file edit, rebuild + push into the same registry.
      writeFileSync(path.join(src, "app", "main.sh"), `echo edited ${r} ${builder}\n`);
      const warm = await buildInChild({ builder, base: registry.base, registry: registry.host, name: `bench/${builder}`, src, cacheDir });
      result.B[builder].push(warm.ms);
      log(`B ${builder} one-file edit rebuild+push: ${fmt(warm.ms)}`);
      stopRegistry(registry);
    }
  }
  // Per run: the two builds of a run ran back to back, under about the same load.
  if (!rssOnly)
    result.A.perRun = result.A.oci.map((ms, i) => ({ run: i + 1, oci: fmt(ms), docker: fmt(result.A.docker[i]), ratio: (ms / result.A.docker[i]).toFixed(2) }));
  const a = min(result.A.oci) / min(result.A.docker);
  const b = min(result.B.oci) / min(result.B.docker);
  if (!rssOnly)
    result.summary = {
      A: { oci: fmt(min(result.A.oci)), docker: fmt(min(result.A.docker)), ratio: a.toFixed(2), target: "≤ 0.5", met: a <= 0.5 },
      B: {
        oci: fmt(min(result.B.oci)),
        docker: fmt(min(result.B.docker)),
        ratio: b.toFixed(2),
        target: "≤ 1 s and ≤ 0.25",
        met: min(result.B.oci) <= 1000 && b <= 0.25,
      },
    };
  if (!skipRss) {
    log("C: writing a 2 GB random file...");
    const big = path.join(work, "big");
    mkdirSync(path.join(big, "data"), { recursive: true });
    mkdirSync(path.join(big, "app"), { recursive: true });
    writeRandomFile(path.join(big, "data", "two-gb.bin"), 2 * 1024 * 1024 * 1024);
    writeFileSync(path.join(big, "app", "x"), "x\n");
    rmSync(src, { recursive: true, force: true }); // room on disk
    const registry = await startRegistry();
    const loadBefore = loadavg();
    const c = await buildInChild({ builder: "oci", base: registry.base, registry: registry.host, name: "bench/big", src: big });
    stopRegistry(registry);
    result.C = {
      peakRssMb: Math.round(c.hwmKb / 1024),
      ms: Math.round(c.ms),
      target: "< 200 MB",
      met: c.hwmKb / 1024 < 200,
      load: `${loadBefore} → ${loadavg()}`,
    };
    log(`C oci 2 GB layer build+push: ${fmt(c.ms)}, peak RSS ${result.C.peakRssMb} MB`);
  }
  if (asJson) console.log(JSON.stringify(result, null, 2));
  else console.log(JSON.stringify({ ...result.summary, perRun: result.A.perRun }, null, 2), result.C ? JSON.stringify(result.C) : "");
}

try {
  await main();
} finally {
  for (const r of registries) {
    try {
      stopRegistry(r);
    } catch {}
  }
  for (const tag of localTags) await run("docker", ["image", "rm", tag]).catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
}
