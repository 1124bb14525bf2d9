#!/usr/bin/env node
// Tag computation benchmark (issue 2). Run from the repo root:
//   pnpm --filter @kiln/core build && node bench/hash.mjs
// Generates a deterministic 20,000-file / ~400 MB tree under bench/.work/ (once), then times, in the
// same run and with the page cache warm for both:
//   1. `tar -cf - DIR | sha256sum`           (the baseline: read + hash every byte once)
//   2. computeTag, first computation         (empty stat cache; includes writing the cache file)
//   3. computeTag, second computation        (a new cache instance loading that file, as a new process)
// and prints the ratios: (2)/(1) — target ≤ 1.3 — and (2)/(3) — target ≥ 10. For context it also
// times the floor of any stat cache that re-validates every file: walk.ts alone (readdir + lstat +
// ignore rules + sorted entries), the bare Node loop (readdirSync + lstatSync per entry, nothing
// kept), and GNU find printing size/mtime/ctime/inode of every entry (one native lstat each).
import { spawnSync } from "node:child_process";
import { cpus, totalmem, release } from "node:os";
import { existsSync, lstatSync, readdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { generateTree } from "./lib/tree.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const work = join(here, ".work");
const tree = join(work, "tree");
const cacheFile = join(work, "hash-cache.bin");
const FILES = Number(process.env.BENCH_FILES ?? 20_000);
const TOTAL_BYTES = Number(process.env.BENCH_BYTES ?? 400 * 1024 * 1024);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

const core = await import(join(here, "..", "packages", "core", "dist", "index.js"));
const { computeTag, FileDigestCache, walkDirectory, DEFAULT_IGNORE_PATTERNS } = core;

const generated = generateTree(tree, FILES, TOTAL_BYTES);
if (generated.created) {
  // Files younger than the cache's racy window (2 s) are not remembered; let them age.
  await new Promise((resolve) => setTimeout(resolve, 2500));
}

const spec = {
  base: { kind: "image", ref: "python:3.11-slim-bookworm", python: [3, 11] },
  layers: [{ kind: "sourceFolder", hostPath: tree, dest: "/app" }],
  name: "bench",
  platform: ["linux/amd64"],
  installer: "uv",
  uvImage: "ghcr.io/astral-sh/uv:0.5.0",
  extendable: true,
};

function time(fn) {
  const start = process.hrtime.bigint();
  const value = fn();
  return { ms: Number(process.hrtime.bigint() - start) / 1e6, value };
}

/** The floor of any stat cache: one lstat per entry, done natively by GNU find. */
function findStat() {
  const r = spawnSync("find", [tree, "-printf", "%s %T@ %C@ %i\\n"], { encoding: "utf8", maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`find failed: ${r.stderr}`);
  return r.stdout.length;
}

/** The floor of any stat cache in Node: one readdirSync per directory, one lstatSync per entry. */
function nodeStat() {
  let entries = 0;
  const visit = (dir) => {
    for (const name of readdirSync(dir)) {
      const path = `${dir}/${name}`;
      entries++;
      if (lstatSync(path).isDirectory()) visit(path);
    }
  };
  visit(tree);
  return entries;
}

function tarSha() {
  const r = spawnSync("sh", ["-c", 'tar -cf - -C "$1" tree | sha256sum', "sh", work], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`tar | sha256sum failed: ${r.stderr}`);
  return r.stdout.split(" ")[0];
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// Warm the page cache for everyone, then alternate so neither side gets a systematically warmer run.
tarSha();
const tarMs = [];
const coldMs = [];
const warmMs = [];
const walkMs = [];
const findMs = [];
const nodeStatMs = [];
let tag;
for (let round = 0; round < ROUNDS; round++) {
  tarMs.push(time(tarSha).ms);
  rmSync(cacheFile, { force: true });
  const cold = time(() => computeTag(spec, { cache: new FileDigestCache(cacheFile) }));
  coldMs.push(cold.ms);
  if (!existsSync(cacheFile)) throw new Error("the first computation did not persist the stat cache");
  const warm = time(() => computeTag(spec, { cache: new FileDigestCache(cacheFile) }));
  warmMs.push(warm.ms);
  walkMs.push(time(() => walkDirectory(tree, DEFAULT_IGNORE_PATTERNS)).ms);
  findMs.push(time(findStat).ms);
  nodeStatMs.push(time(nodeStat).ms);
  if (warm.value !== cold.value) throw new Error("warm and cold tags differ");
  if (tag !== undefined && tag !== cold.value) throw new Error("tag not stable across rounds");
  tag = cold.value;
}

const tarMedian = median(tarMs);
const coldMedian = median(coldMs);
const warmMedian = median(warmMs);
const result = {
  files: generated.files,
  bytes: generated.bytes,
  tag,
  rounds: ROUNDS,
  tarSha256Ms: tarMs.map(Math.round),
  computeTagColdMs: coldMs.map(Math.round),
  computeTagWarmMs: warmMs.map(Math.round),
  walkOnlyMs: walkMs.map(Math.round),
  findStatMs: findMs.map(Math.round),
  nodeStatMs: nodeStatMs.map(Math.round),
  warmOverWalk: +(warmMedian / median(walkMs)).toFixed(2),
  warmOverNodeStat: +(warmMedian / median(nodeStatMs)).toFixed(2),
  coldOverFindStat: +(coldMedian / median(findMs)).toFixed(1),
  coldOverNodeStat: +(coldMedian / median(nodeStatMs)).toFixed(1),
  coldOverTar: +(coldMedian / tarMedian).toFixed(2),
  coldOverWarm: +(coldMedian / warmMedian).toFixed(1),
  machine: `${cpus().length}× ${cpus()[0]?.model ?? "cpu"}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, Linux ${release()}, Node ${process.version}`,
};
console.log(JSON.stringify(result, null, 2));
console.log(
  `computeTag (cold) / tar|sha256sum = ${result.coldOverTar} (target ≤ 1.3)   ` + `cold / warm (stat cache) = ${result.coldOverWarm}× (target ≥ 10×)`,
);
if (process.env.BENCH_STRICT && (result.coldOverTar > 1.3 || result.coldOverWarm < 10)) process.exitCode = 1;
