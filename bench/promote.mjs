#!/usr/bin/env node
/**
 * Promotion benchmark (issue 17). A ~500 MB image (five 100 MB layers of random bytes, built with
 * the machine's dockerd from scratch) sits in a source registry; it is copied to an empty target
 * registry (both distribution 2.8 on loopback, open), in the same run, compared runs interleaved:
 *
 *   kiln:   `promoteImage` from @kiln/core's built dist, in its own node process (what `kiln
 *           promote` and build({ promoteFrom }) run): blobs streamed registry to registry;
 *   docker: `docker pull` + `docker tag` + `docker push` (the daemon extracts, then recompresses).
 *                                                                                  target ≤ 0.5×
 * Every run gets a fresh target registry (so neither side finds or mounts blobs from an earlier
 * run) and the docker side starts with the image removed from the daemon. Kiln's peak RSS is
 * reported too (memory stays bounded: it never holds a layer, only upload chunks).
 *
 * Needs: `pnpm --filter @kiln/core build`; dockerd; /usr/bin/docker-registry.
 * Usage: node bench/promote.mjs [--runs N] [--mb 500] [--json]
 */
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, mkdirSync, openSync, rmSync, writeFileSync, writeSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { importTestRegistry, snapshotBuiltCore } from "./lib/coreSnapshot.mjs";

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const option = (name, fallback) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) || fallback : fallback);
const RUNS = Math.max(1, option("--runs", 3));
const TOTAL_MB = Math.max(5, option("--mb", 500));
const LAYERS = 5;
const asJson = args.includes("--json");
const log = (...m) => !asJson && console.error(...m);

// A snapshot of the built core, so a rebuild in the checkout meanwhile cannot change what is measured.
const snapshot = snapshotBuiltCore(root, "promote-core", "bench/promote.mjs");
const coreDist = pathToFileURL(path.join(snapshot, "dist/index.js")).href;
const { startRegistry } = await importTestRegistry(root);

const work = path.join("/var/tmp", `kiln-bench-promote-${process.pid}`);
const LOCAL_TAG = "kiln-bench/promote-src:1";
const stops = [];

function writeRandomFile(file, bytes) {
  const fd = openSync(file, "w");
  for (let left = bytes; left > 0; left -= 1 << 20) writeSync(fd, randomBytes(Math.min(1 << 20, left)));
  closeSync(fd);
}

async function docker(...argv) {
  return run("docker", argv, { maxBuffer: 64 << 20 });
}

/** Removes the image from the daemon (all given tags; its layers go with the last tag). */
async function dockerRemove(...refs) {
  await docker("rmi", "-f", ...refs).catch(() => undefined);
}

/** Kiln's side, in a child node process: promoteImage, then its wall time and peak RSS. */
function kilnPromote(source, target) {
  const script = `
    const { promoteImage, RegistryClient } = await import(${JSON.stringify(coreDist)});
    const started = performance.now();
    const result = await promoteImage(new RegistryClient({ useDockerConfig: false }), ${JSON.stringify(source)}, ${JSON.stringify(target)});
    const ms = performance.now() - started;
    console.log(JSON.stringify({ ms, maxRssKiB: process.resourceUsage().maxRSS, digest: result.digest, bytesCopied: result.bytesCopied, copied: result.blobs.copied }));
  `;
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (c) => (out += c));
    child.stderr.on("data", (c) => (err += c));
    child.on("close", (code) => {
      if (code !== 0) return reject(new Error(`kiln promote exited ${code}: ${err}`));
      resolve({ ...JSON.parse(out.trim().split("\n").at(-1)), processMs: performance.now() - started });
    });
  });
}

async function dockerPromote(source, target) {
  const started = performance.now();
  await docker("pull", "-q", source);
  await docker("tag", source, target);
  await docker("push", target);
  const ms = performance.now() - started;
  const { stdout } = await docker("image", "inspect", "--format", "{{json .RepoDigests}}", target);
  await dockerRemove(source, target);
  return { ms, repoDigests: JSON.parse(stdout) };
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length % 2 ? sorted[(sorted.length - 1) / 2] : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
};

try {
  mkdirSync(work, { recursive: true });
  log(`writing ${TOTAL_MB} MB of random data in ${LAYERS} layers…`);
  const lines = ["FROM scratch"];
  for (let i = 0; i < LAYERS; i++) {
    writeRandomFile(path.join(work, `layer${i}.bin`), Math.floor((TOTAL_MB << 20) / LAYERS));
    lines.push(`COPY layer${i}.bin /data/layer${i}.bin`);
  }
  writeFileSync(path.join(work, "Dockerfile"), `${lines.join("\n")}\n`);
  await docker("build", "-q", "-t", LOCAL_TAG, work);

  const source = await startRegistry();
  stops.push(() => source.stop());
  const sourceRef = `${source.host}/bench/big:1`;
  await docker("tag", LOCAL_TAG, sourceRef);
  log(`pushing the image to the source registry ${source.host}…`);
  await docker("push", sourceRef);
  await dockerRemove(LOCAL_TAG, sourceRef);
  rmSync(work, { recursive: true, force: true });

  const kiln = [];
  const dockerRuns = [];
  for (let i = 0; i < RUNS; i++) {
    // Alternate which side goes first, so neither always meets a warmer page cache.
    const order = i % 2 === 0 ? ["kiln", "docker"] : ["docker", "kiln"];
    for (const side of order) {
      const target = await startRegistry();
      try {
        if (side === "kiln") {
          const result = await kilnPromote(sourceRef, `${target.host}/bench/big:1`);
          kiln.push(result);
          log(
            `run ${i + 1} kiln:   ${(result.ms / 1000).toFixed(2)} s in-process (${(result.processMs / 1000).toFixed(2)} s with node start-up), ${(result.bytesCopied / 1e6).toFixed(0)} MB streamed, peak RSS ${(result.maxRssKiB / 1024).toFixed(0)} MiB`,
          );
        } else {
          const result = await dockerPromote(sourceRef, `${target.host}/bench/big:1`);
          dockerRuns.push(result);
          log(`run ${i + 1} docker: ${(result.ms / 1000).toFixed(2)} s (pull + tag + push)`);
        }
      } finally {
        await target.stop();
      }
    }
  }
  const kilnMs = kiln.map((r) => r.processMs);
  const dockerMs = dockerRuns.map((r) => r.ms);
  const summary = {
    image: `${TOTAL_MB} MB in ${LAYERS} layers (random, incompressible)`,
    runs: RUNS,
    kilnSeconds: kilnMs.map((ms) => +(ms / 1000).toFixed(2)),
    dockerSeconds: dockerMs.map((ms) => +(ms / 1000).toFixed(2)),
    kilnMedianSeconds: +(median(kilnMs) / 1000).toFixed(2),
    dockerMedianSeconds: +(median(dockerMs) / 1000).toFixed(2),
    ratio: +(median(kilnMs) / median(dockerMs)).toFixed(3),
    ratioSpread: [+(Math.min(...kilnMs) / Math.max(...dockerMs)).toFixed(3), +(Math.max(...kilnMs) / Math.min(...dockerMs)).toFixed(3)],
    kilnPeakRssMiB: Math.max(...kiln.map((r) => Math.round(r.maxRssKiB / 1024))),
    target: "≤ 0.5×",
  };
  summary.pass = summary.ratio <= 0.5;
  if (asJson) console.log(JSON.stringify(summary));
  else {
    console.log(`Promotion of a ${summary.image}, ${RUNS} runs each (kiln includes node start-up):`);
    console.log(
      `  kiln promoteImage           median ${summary.kilnMedianSeconds} s  (${summary.kilnSeconds.join(", ")})  peak RSS ${summary.kilnPeakRssMiB} MiB`,
    );
    console.log(`  docker pull + tag + push    median ${summary.dockerMedianSeconds} s  (${summary.dockerSeconds.join(", ")})`);
    console.log(`  ratio ${summary.ratio}× (spread ${summary.ratioSpread.join("–")}×), target ${summary.target}: ${summary.pass ? "PASS" : "FAIL"}`);
  }
  process.exitCode = summary.pass ? 0 : 1;
} finally {
  for (const stop of stops.reverse()) await stop().catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
  rmSync(snapshot, { recursive: true, force: true });
}
