#!/usr/bin/env node
/**
 * Install size and spec-load time of a packed @kiln/core, as an npm user gets it:
 *  1. `npm install` of the tarball into a fresh project ("type": "module"): `du -sk node_modules`,
 *     and the largest packages in it;
 *  2. `kiln explain images.ts` (a small TypeScript spec: one image, a relative import, a type-only
 *     import) vs the same spec as `images.mjs` (no TypeScript loader) vs `node -e 0`, each a fresh
 *     process, medians of N runs, interleaved across tarballs so machine load hits all alike.
 *
 *   node bench/spec-load.mjs                                   # packs packages/core (build it first)
 *   node bench/spec-load.mjs --tarball before=/tmp/core-before.tgz --tarball after=/tmp/core-after.tgz
 *   BENCH_RUNS=30 node bench/spec-load.mjs …
 *
 * Only the npm registry is contacted (with --prefer-offline, a warm cache makes it local).
 * Prints a Markdown table.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const RUNS = Number(process.env.BENCH_RUNS ?? 15);
const work = mkdtempSync(join(tmpdir(), "kiln-bench-spec-load-"));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function parseArgs(argv) {
  const tarballs = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--tarball") {
      const [label, path] = argv[++i].split("=");
      tarballs.push({ label, tarball: resolve(path) });
    } else throw new Error(`unknown argument ${argv[i]}`);
  }
  return tarballs;
}

function packCurrentCore() {
  const out = join(work, "packed");
  mkdirSync(out);
  execFileSync("pnpm", ["pack", "--pack-destination", out], { cwd: join(ROOT, "packages/core"), stdio: "pipe" });
  return join(
    out,
    readdirSync(out).find((f) => f.endsWith(".tgz")),
  );
}

const SPEC_TS = `import { Image } from "@kiln/core";
import { defaults, type Mode } from "./settings.js";
const mode: Mode = "prod";
export const api = Image.fromBase("busybox:1.36", { name: "bench/api" }).withEnvVars({ ...defaults, MODE: mode });
export default api;
`;
const SETTINGS_TS = `export type Mode = "prod" | "dev";
export const defaults: Record<string, string> = { REGION: "eu" };
`;
const SPEC_MJS = `import { Image } from "@kiln/core";
import { defaults } from "./settings.mjs";
const mode = "prod";
export const api = Image.fromBase("busybox:1.36", { name: "bench/api" }).withEnvVars({ ...defaults, MODE: mode });
export default api;
`;
const SETTINGS_MJS = `export const defaults = { REGION: "eu" };\n`;

function install({ label, tarball }) {
  const dir = join(work, label);
  mkdirSync(dir);
  writeFileSync(
    join(dir, "package.json"),
    JSON.stringify({ name: `bench-${label}`, private: true, type: "module", dependencies: { "@kiln/core": `file:${tarball}` } }),
  );
  const started = process.hrtime.bigint();
  execFileSync("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: dir, stdio: "pipe" });
  const installMs = Number(process.hrtime.bigint() - started) / 1e6;
  const kib = (path) => Number(execFileSync("du", ["-sk", path]).toString().split("\t")[0]);
  const modules = join(dir, "node_modules");
  const names = [];
  for (const entry of readdirSync(modules)) {
    if (entry.startsWith(".")) continue;
    names.push(...(entry.startsWith("@") ? readdirSync(join(modules, entry)).map((n) => `${entry}/${n}`) : [entry]));
  }
  // One du over all packages, so a file hard-linked into two of them (esbuild's binary) counts once.
  const sizes = execFileSync("du", ["-sk", ...names], { cwd: modules })
    .toString()
    .trim()
    .split("\n");
  const packages = sizes.map((line) => line.split("\t")).map(([k, name]) => ({ name, kib: Number(k) }));
  packages.sort((a, b) => b.kib - a.kib);
  writeFileSync(join(dir, "images.ts"), SPEC_TS);
  writeFileSync(join(dir, "settings.ts"), SETTINGS_TS);
  writeFileSync(join(dir, "images.mjs"), SPEC_MJS);
  writeFileSync(join(dir, "settings.mjs"), SETTINGS_MJS);
  return { label, dir, installMs, totalKib: kib(modules), packages, ts: [], mjs: [] };
}

function timeNode(args, cwd) {
  const started = process.hrtime.bigint();
  const result = spawnSync(process.execPath, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
  const elapsed = Number(process.hrtime.bigint() - started) / 1e6;
  if (result.status !== 0) throw new Error(`node ${args.join(" ")} failed in ${cwd}: ${result.stderr}`);
  return { elapsed, stdout: result.stdout.toString() };
}

const tarballs = parseArgs(process.argv.slice(2));
if (tarballs.length === 0) tarballs.push({ label: "current", tarball: packCurrentCore() });
try {
  const projects = tarballs.map(install);
  const kiln = (p) => join(p.dir, "node_modules/@kiln/core/bin/kiln.js");
  for (const p of projects) {
    // Warm the file cache once; both specs must give the same tag.
    const ts = timeNode([kiln(p), "explain", "images.ts", "--json"], p.dir).stdout;
    const mjs = timeNode([kiln(p), "explain", "images.mjs", "--json"], p.dir).stdout;
    if (JSON.parse(ts).tag !== JSON.parse(mjs).tag) throw new Error(`${p.label}: images.ts and images.mjs give different tags`);
  }
  const node = [];
  for (let i = 0; i < RUNS; i++) {
    node.push(timeNode(["-e", "0"], work).elapsed);
    for (const p of projects) {
      p.ts.push(timeNode([kiln(p), "explain", "images.ts"], p.dir).elapsed);
      p.mjs.push(timeNode([kiln(p), "explain", "images.mjs"], p.dir).elapsed);
    }
  }
  const mib = (k) => `${(k / 1024).toFixed(1)} MiB`;
  const ms = (n) => `${n.toFixed(0)} ms`;
  console.log(
    `Node ${process.version}, ${RUNS} runs each, interleaved; load average ${(await import("node:os"))
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(" ")}\n`,
  );
  console.log(`| | ${projects.map((p) => p.label).join(" | ")} |`);
  console.log(`|---|${projects.map(() => "---").join("|")}|`);
  console.log(`| \`node_modules\` after \`npm install\` | ${projects.map((p) => `**${mib(p.totalKib)}**`).join(" | ")} |`);
  console.log(`| packages installed | ${projects.map((p) => p.packages.length).join(" | ")} |`);
  console.log(
    `| largest | ${projects
      .map((p) =>
        p.packages
          .slice(0, 3)
          .map((x) => `${x.name} ${mib(x.kib)}`)
          .join(", "),
      )
      .join(" | ")} |`,
  );
  console.log(`| \`npm install\` (warm cache) | ${projects.map((p) => ms(p.installMs)).join(" | ")} |`);
  console.log(`| \`kiln explain images.ts\` | ${projects.map((p) => `**${ms(median(p.ts))}**`).join(" | ")} |`);
  console.log(`| \`kiln explain images.mjs\` (no TypeScript) | ${projects.map((p) => ms(median(p.mjs))).join(" | ")} |`);
  console.log(`| TypeScript cost (ts − mjs) | ${projects.map((p) => ms(median(p.ts) - median(p.mjs))).join(" | ")} |`);
  console.log(`| \`node -e 0\` | ${projects.map(() => ms(median(node))).join(" | ")} |`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
