#!/usr/bin/env node
/**
 * Docker build benchmark (issue 5). On the machine's Docker Engine, in the same run, best of RUNS
 * runs each, runs of the compared commands interleaved:
 *
 *   A. the same Dockerfile and ~500 MB context (`FROM busybox` + `COPY data /data`), no cache:
 *      a Kiln build (a node process running DockerImageBuilder from the built @kiln/docker, BuildKit
 *      through the Engine API) vs `docker build --no-cache` with the classic builder.  target ≤ 1.0×
 *   B. a warm rebuild after changing one source file vs the cold build (no cache) of the same Kiln
 *      image: dependencies (`RUN` steps) first, the ~500 MB data folder, then a small source folder.
 *      Incremental (staged) builds, the default; for comparison, also the warm rebuild with
 *      `incremental: false` (one build, whole context).                            target ≤ 0.15×
 *   C. peak RSS of the Kiln process while it streams a 2 GB context to the daemon.  target < 200 MB
 *
 * Needs: `pnpm --filter @kiln/core build && pnpm --filter @kiln/docker build`; dockerd running;
 * /bin/busybox (busybox-static). Usage: node bench/docker-build.mjs [--runs N] [--json]
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, rmSync, writeFileSync, writeSync, ftruncateSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { ensureBusyboxImage } from "./lib/services.mjs";

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const RUNS = Math.max(1, Number(args[args.indexOf("--runs") + 1]) || 2);
const asJson = args.includes("--json");
const coreDist = pathToFileURL(path.join(root, "packages/core/dist/index.js")).href;
const dockerDist = pathToFileURL(path.join(root, "packages/docker/dist/index.js")).href;
for (const f of [coreDist, dockerDist]) {
  if (!existsSync(fileURLToPath(f))) {
    console.error(`missing ${fileURLToPath(f)}: run \`pnpm --filter @kiln/core build && pnpm --filter @kiln/docker build\` first`);
    process.exit(2);
  }
}

const work = path.join("/var/tmp", `kiln-bench-docker-${process.pid}`);
const BUSYBOX = "kiln-bench/busybox:1";
const tagsToRemove = new Set();
const log = (...m) => !asJson && console.error(...m);

function writeRandomFile(file, bytes) {
  const fd = openSync(file, "w");
  const chunk = 1 << 20;
  for (let left = bytes; left > 0; left -= chunk) writeSync(fd, randomBytes(Math.min(chunk, left)));
  closeSync(fd);
}

function writeSparseFile(file, bytes) {
  const fd = openSync(file, "w");
  ftruncateSync(fd, bytes);
  closeSync(fd);
}

/** Stage image IDs the incremental builds made (removed at the end, with their tags). */
const stageImages = new Set();

/**
 * Runs a Kiln build in a fresh node process; resolves with wall time (ms), the child's peak RSS, and
 * for incremental builds the stages (reused/built, context bytes sent).
 */
async function kilnBuild(specCode, { noCache = false, incremental = true } = {}) {
  const script = `
    const { Image } = await import(${JSON.stringify(coreDist)});
    const { DockerImageBuilder } = await import(${JSON.stringify(dockerDist)});
    const image = ${specCode};
    const uri = image.uri;
    const stages = [];
    await new DockerImageBuilder({ noCache: ${noCache}, incremental: ${incremental} }).buildImage(image, {
      onEvent: (e) => e.type === "build.stage" && stages.push({ ref: e.ref, status: e.status, contextBytes: e.contextBytes }),
    });
    process.stdout.write(JSON.stringify({ uri, stages, maxRssKb: process.resourceUsage().maxRSS }));
  `;
  const result = await timed(() => run(process.execPath, ["--input-type=module", "-e", script], { maxBuffer: 1 << 20 })).then(({ ms, value }) => ({
    ms,
    ...JSON.parse(value.stdout),
  }));
  for (const stage of result.stages) {
    if (stage.ref === result.uri) continue;
    tagsToRemove.add(stage.ref);
    const id = await run("docker", ["image", "inspect", "--format", "{{.Id}}", stage.ref]).then(
      (o) => o.stdout.trim(),
      () => undefined,
    );
    if (id) stageImages.add(id);
  }
  result.sentBytes = result.stages.reduce((n, s) => n + (s.contextBytes ?? 0), 0);
  return result;
}

async function timed(fn) {
  const start = process.hrtime.bigint();
  const value = await fn();
  return { ms: Number(process.hrtime.bigint() - start) / 1e6, value };
}

const best = (xs) => Math.min(...xs);

async function main() {
  mkdirSync(work, { recursive: true });
  await ensureBusyboxImage(BUSYBOX, work);

  // ~500 MB of incompressible data, in 100 files, plus a small source folder.
  log("preparing a ~500 MB context…");
  const ctx = path.join(work, "ctx");
  mkdirSync(path.join(ctx, "data"), { recursive: true });
  for (let i = 0; i < 100; i++) writeRandomFile(path.join(ctx, "data", `blob-${String(i).padStart(3, "0")}.bin`), 5 * 1024 * 1024);
  writeFileSync(path.join(ctx, "Dockerfile"), `FROM ${BUSYBOX}\nCOPY data /data\n`);
  const src = path.join(work, "src");
  mkdirSync(src, { recursive: true });
  for (let i = 0; i < 50; i++) writeFileSync(path.join(src, `mod${i}.py`), `VALUE = ${i}\n`);

  // A. Kiln (BuildKit via the API) vs docker build (classic), same Dockerfile + context, no cache.
  const kilnA = [];
  const dockerA = [];
  for (let r = 0; r < RUNS; r++) {
    const tagD = `kiln-bench-classic:${r}`;
    tagsToRemove.add(tagD);
    const d = await timed(() => run("docker", ["build", "--no-cache", "-q", "-t", tagD, ctx], { env: { ...process.env, DOCKER_BUILDKIT: "0" } }));
    dockerA.push(d.ms);
    const k = await kilnBuild(`Image.fromDockerfile(${JSON.stringify(path.join(ctx, "Dockerfile"))}, { name: "kiln-bench-kiln" })`, { noCache: true });
    tagsToRemove.add(k.uri);
    kilnA.push(k.ms);
    log(`A run ${r + 1}: docker classic ${d.ms.toFixed(0)} ms, kiln ${k.ms.toFixed(0)} ms`);
  }

  // B. cold (no cache) vs warm after one source file changed.
  const specB = `Image.fromBase(${JSON.stringify(BUSYBOX)}, { name: "kiln-bench-warm" })
      .withCommands("dd if=/dev/urandom of=/deps.bin bs=1M count=384 2>/dev/null && sha256sum /deps.bin > /deps.sum && rm /deps.bin")
      .withSourceFolder(${JSON.stringify(path.join(ctx, "data"))}, "/app/data")
      .withSourceFolder(${JSON.stringify(src)}, "/app/src")`;
  const cold = [];
  const warm = [];
  const warmOneShot = [];
  let warmSent = 0;
  for (let r = 0; r < RUNS; r++) {
    const c = await kilnBuild(specB, { noCache: true });
    tagsToRemove.add(c.uri);
    cold.push(c.ms);
    writeFileSync(path.join(src, "mod7.py"), `VALUE = ${Date.now()}\n`);
    const w = await kilnBuild(specB);
    tagsToRemove.add(w.uri);
    warm.push(w.ms);
    warmSent = Math.max(warmSent, w.sentBytes);
    const reused = w.stages.filter((s) => s.status === "reused").length;
    // The same edit, built in one go (the whole context sent again), for comparison.
    writeFileSync(path.join(src, "mod8.py"), `VALUE = ${Date.now()}\n`);
    const o = await kilnBuild(specB, { incremental: false });
    tagsToRemove.add(o.uri);
    warmOneShot.push(o.ms);
    log(
      `B run ${r + 1}: cold ${c.ms.toFixed(0)} ms, warm ${w.ms.toFixed(0)} ms (${reused}/${w.stages.length} stages reused, ${w.sentBytes} context bytes sent), warm one-shot ${o.ms.toFixed(0)} ms`,
    );
  }

  // C. peak RSS while streaming a 2 GB context (sparse files: the tar still carries 2 GB).
  const big = path.join(work, "big");
  mkdirSync(path.join(big, "data"), { recursive: true });
  for (let i = 0; i < 8; i++) writeSparseFile(path.join(big, "data", `part-${i}.bin`), 256 * 1024 * 1024);
  writeFileSync(path.join(big, "marker.txt"), "2 GB context\n");
  writeFileSync(path.join(big, "Dockerfile"), `FROM ${BUSYBOX}\nCOPY marker.txt /marker.txt\n`);
  const bigBuild = await kilnBuild(`Image.fromDockerfile(${JSON.stringify(path.join(big, "Dockerfile"))}, { name: "kiln-bench-2gb" })`, { noCache: true });
  tagsToRemove.add(bigBuild.uri);
  log(`C: 2 GB context sent in ${bigBuild.ms.toFixed(0)} ms, peak RSS ${(bigBuild.maxRssKb / 1024).toFixed(0)} MB`);

  const result = {
    runs: RUNS,
    contextBytes: 500 * 1024 * 1024,
    A: { kilnMs: best(kilnA), dockerClassicMs: best(dockerA), ratio: best(kilnA) / best(dockerA), target: 1.0 },
    B: {
      coldMs: best(cold),
      warmMs: best(warm),
      ratio: best(warm) / best(cold),
      warmContextBytes: warmSent,
      warmOneShotMs: best(warmOneShot),
      oneShotRatio: best(warmOneShot) / best(cold),
      target: 0.15,
    },
    C: { peakRssMb: bigBuild.maxRssKb / 1024, sendMs: bigBuild.ms, target: 200 },
  };
  if (asJson) console.log(JSON.stringify(result, null, 2));
  else {
    console.log(
      `A. 500 MB context, no cache: kiln ${result.A.kilnMs.toFixed(0)} ms vs docker build (classic) ${result.A.dockerClassicMs.toFixed(0)} ms → ${result.A.ratio.toFixed(2)}× (target ≤ 1.0)`,
    );
    console.log(
      `B. warm rebuild (one source file changed) ${result.B.warmMs.toFixed(0)} ms vs cold ${result.B.coldMs.toFixed(0)} ms → ${(result.B.ratio * 100).toFixed(1)} % (target ≤ 15 %); context sent ${result.B.warmContextBytes} bytes`,
    );
    console.log(`   same edit with incremental: false ${result.B.warmOneShotMs.toFixed(0)} ms → ${(result.B.oneShotRatio * 100).toFixed(1)} %`);
    console.log(`C. peak RSS of the Kiln process sending a 2 GB context: ${result.C.peakRssMb.toFixed(0)} MB (target < 200 MB)`);
  }
}

try {
  await main();
} finally {
  await run("docker", ["image", "rm", "-f", ...tagsToRemove]).catch(() => undefined);
  if (stageImages.size > 0) await run("docker", ["image", "rm", "-f", ...stageImages]).catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
}
