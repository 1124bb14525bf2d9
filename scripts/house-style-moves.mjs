#!/usr/bin/env node
/**
 * One-time (and re-runnable) house-style moves, done with `git mv`:
 *
 * 1. File names. Modules (everything under packages/*\/src, and test helper modules) are camelCase,
 *    named after what they hold (`tokenCache.ts`); test files are kebab-case, named after the behaviour
 *    they test (`token-cache.test.ts`, `build-secrets.integration.test.ts`). Any file that breaks the
 *    rule is renamed, so a file another change adds meanwhile is renamed too.
 * 2. packages/docker/src is grouped into folders by concern (GROUPS below). A module there that no
 *    group names stays where it is and is listed, to be placed by hand (or added to GROUPS).
 *
 * Every relative import (and any relative path literal) in the repository's code that reaches a moved
 * file, or that sits in a moved file, is recomputed from where the files are before and after the
 * move, not from a list. Repo-relative paths (`packages/docker/src/push.ts`) in docs, code comments,
 * configs and changesets are rewritten, and so are mentions of a renamed file's old name when that name
 * is unique in the repository. Nothing else changes. On a tree already in house style it does nothing.
 *
 *   node scripts/house-style-moves.mjs [--root DIR] [--dry-run]
 *
 * Afterwards: pnpm typecheck && pnpm build && pnpm lint (and vitest list in a package to see its
 * test files collected).
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmdirSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

/** packages/docker/src, by concern. Keys are folders; values are module names (without .ts). */
const DOCKER_GROUPS = {
  // how Kiln reaches a Docker Engine and reads its streams
  daemon: ["connection", "daemon", "jsonStream", "modemDebug"],
  // one build on the daemon: the request, its progress stream, BuildKit's trace, step logs, failures
  build: ["buildOne", "buildProgress", "buildkitTrace", "logLines", "imagePullFailure"],
  // incremental builds: stages, their contexts, reuse and pruning of stage images
  incremental: ["incremental", "stages", "stageContext", "prune"],
  // the BuildKit session the daemon calls back on: gRPC over a hijacked connection, secrets, filesync
  session: ["buildSession", "grpcServer", "protobuf", "sessionMessages", "hijackedStream"],
  // pushing: the daemon's push, its credentials, per-platform tags and the index that joins them
  push: ["push", "registryAuth", "multiPlatform"],
  // step containers a lost daemon leaves behind, and Kiln's ledger of them
  orphans: ["orphanContainers", "orphanLedger"],
};
/** Stay at the top of packages/docker/src: the entry points, the plugin's two classes, and the image labels
 * (provenance.ts reads ../package.json next to src/ and dist/ alike, so it must stay one level down). */
const DOCKER_TOP_LEVEL = ["index", "internal", "builder", "checkers", "provenance"];

const CODE_EXT = /\.(ts|mts|cts|js|mjs|cjs)$/;
const TEXT_EXT = /\.(ts|mts|cts|js|mjs|cjs|json|md|ya?ml|sh)$/;
const SKIP_DIRS = new Set(["node_modules", "dist", ".git", ".turbo", "coverage", ".kiln-cache", ".kiln", ".work"]);

function parseArgs(argv) {
  const at = argv.indexOf("--root");
  return {
    root: resolve(at >= 0 ? argv[at + 1] : join(dirname(fileURLToPath(import.meta.url)), "..")),
    dryRun: argv.includes("--dry-run"),
  };
}

function walk(dir, out = []) {
  for (const name of readdirSync(dir)) {
    if (SKIP_DIRS.has(name) || name.startsWith(".tmp-")) continue;
    const path = join(dir, name);
    const stat = statSync(path);
    if (stat.isDirectory()) walk(path, out);
    else out.push(path);
  }
  return out;
}

const camel = (stem) => stem.replace(/-([a-z0-9])/g, (_, c) => c.toUpperCase());
const kebab = (stem) =>
  stem
    .replace(/([a-z0-9])([A-Z])/g, "$1-$2")
    .replace(/([A-Z])([A-Z][a-z])/g, "$1-$2")
    .toLowerCase();

/** The house-style name of a file under packages/<pkg>/{src,test}, or undefined when it already is. */
function conventionalName(file) {
  const name = basename(file);
  if (!/\.(ts|mts)$/.test(name) || name.endsWith(".d.ts")) return undefined;
  const dot = name.indexOf(".");
  const stem = name.slice(0, dot);
  const rest = name.slice(dot);
  const isTest = /\.test\.(ts|mts)$/.test(name);
  const wanted = isTest ? kebab(stem) : camel(stem);
  return wanted === stem ? undefined : wanted + rest;
}

/** old absolute path → new absolute path. */
function planMoves(root) {
  const moves = new Map();
  const unplaced = [];
  const packagesDir = join(root, "packages");
  for (const pkg of readdirSync(packagesDir)) {
    for (const part of ["src", "test"]) {
      const dir = join(packagesDir, pkg, part);
      if (!existsSync(dir)) continue;
      for (const file of walk(dir)) {
        if (file.split(sep).includes("fixtures")) continue;
        const renamed = conventionalName(file);
        if (renamed) moves.set(file, join(dirname(file), renamed));
      }
    }
  }
  const dockerSrc = join(packagesDir, "docker", "src");
  if (existsSync(dockerSrc)) {
    const folderOf = new Map(Object.entries(DOCKER_GROUPS).flatMap(([folder, names]) => names.map((n) => [n, folder])));
    for (const name of readdirSync(dockerSrc)) {
      const file = join(dockerSrc, name);
      if (!statSync(file).isFile() || !name.endsWith(".ts")) continue;
      const current = moves.get(file) ?? file;
      const stem = basename(current).replace(/\.ts$/, "");
      const folder = folderOf.get(stem);
      if (folder) moves.set(file, join(dockerSrc, folder, basename(current)));
      else if (!DOCKER_TOP_LEVEL.includes(stem)) unplaced.push(relative(root, current));
    }
  }
  for (const [from, to] of moves) {
    if (existsSync(to) && resolve(to) !== resolve(from)) throw new Error(`refusing to move ${relative(root, from)}: ${relative(root, to)} exists`);
  }
  const targets = [...moves.values()];
  if (new Set(targets).size !== targets.length) throw new Error("two files would get the same name");
  return { moves, unplaced };
}

/** A moved file that finds things relative to its own location at run time cannot move blindly. */
function refuseLocationDependent(root, moves) {
  const bad = [];
  for (const [from, to] of moves) {
    if (dirname(from) === dirname(to)) continue;
    const text = readFileSync(from, "utf8");
    if (/new URL\(\s*["'`]\.{1,2}\//.test(text) || /__dirname|__filename/.test(text)) bad.push(relative(root, from));
  }
  if (bad.length) throw new Error(`these files locate things relative to themselves; move them by hand: ${bad.join(", ")}`);
}

/** The file a relative specifier written in `fromFile` reaches (before the move), or undefined. */
function resolveSpecifier(fromFile, spec, exists) {
  const base = resolve(dirname(fromFile), spec);
  const candidates = [base];
  if (/\.js$/.test(base)) candidates.push(base.replace(/\.js$/, ".ts"));
  if (/\.mjs$/.test(base)) candidates.push(base.replace(/\.mjs$/, ".mts"));
  if (!/\.[a-z]+$/.test(base)) candidates.push(`${base}.ts`, join(base, "index.ts"));
  return candidates.find(exists);
}

function specifierFor(fromFile, target, original) {
  let rel = relative(dirname(fromFile), target).split(sep).join("/");
  if (!rel.startsWith(".")) rel = `./${rel}`;
  // Keep the way the original was written: `.js` for a `.ts` module, or no extension at all.
  if (/\.js$/.test(original) && rel.endsWith(".ts")) rel = rel.replace(/\.ts$/, ".js");
  else if (/\.mjs$/.test(original) && rel.endsWith(".mts")) rel = rel.replace(/\.mts$/, ".mjs");
  else if (!/\.[a-z]+$/.test(original)) rel = rel.replace(/\/index\.ts$/, "").replace(/\.ts$/, "");
  return rel;
}

/** New contents of every code file whose relative specifiers change (keyed by the file's old path). */
function rewriteImports(moves, files) {
  const existing = new Set(files);
  const exists = (p) => existing.has(p);
  const edits = new Map();
  for (const file of files.filter((f) => CODE_EXT.test(f))) {
    const text = readFileSync(file, "utf8");
    const newFile = moves.get(file) ?? file;
    let changed = false;
    const out = text.replace(/(["'`])(\.{1,2}\/[^"'`\s$]*)\1/g, (all, quote, spec) => {
      const target = resolveSpecifier(file, spec, exists);
      if (!target) return all;
      const newTarget = moves.get(target) ?? target;
      if (newTarget === target && newFile === file) return all;
      const next = specifierFor(newFile, newTarget, spec);
      if (next === spec) return all;
      changed = true;
      return `${quote}${next}${quote}`;
    });
    if (changed) edits.set(file, out);
  }
  return edits;
}

/** Repo-relative paths, and unique old names of renamed files, in docs, comments and configs. */
function rewriteMentions(root, moves, files, edits) {
  const byName = new Map();
  for (const f of files) byName.set(basename(f), (byName.get(basename(f)) ?? 0) + 1);
  const pairs = [];
  for (const [from, to] of moves) {
    // `docker/src/push.ts` also matches inside `packages/docker/src/push.ts`.
    const pkgRel = (p) => relative(join(root, "packages"), p).split(sep).join("/");
    pairs.push([pkgRel(from), pkgRel(to)]);
    if (basename(from) !== basename(to) && byName.get(basename(from)) === 1) pairs.push([basename(from), basename(to)]);
  }
  const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  for (const file of files.filter((f) => TEXT_EXT.test(f))) {
    if (file.endsWith("pnpm-lock.yaml")) continue;
    let text = edits.get(file) ?? readFileSync(file, "utf8");
    let changed = false;
    for (const [from, to] of pairs) {
      const re = new RegExp(`(^|[^\\w.-])${escape(from)}(?![\\w-])`, "gm");
      text = text.replace(re, (_all, before) => {
        changed = true;
        return `${before}${to}`;
      });
    }
    if (changed) edits.set(file, text);
  }
  return edits;
}

function isTracked(root, file) {
  try {
    execFileSync("git", ["ls-files", "--error-unmatch", relative(root, file)], { cwd: root, stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

function main() {
  const { root, dryRun } = parseArgs(process.argv.slice(2));
  const { moves, unplaced } = planMoves(root);
  refuseLocationDependent(root, moves);
  // Files git tracks or would track (untracked, not ignored): generated reports and build output are left alone.
  const self = fileURLToPath(import.meta.url);
  const listed = execFileSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], { cwd: root, encoding: "utf8", maxBuffer: 64 << 20 });
  const files = [...new Set(listed.split("\0").filter(Boolean))].map((f) => join(root, f)).filter((f) => existsSync(f) && resolve(f) !== resolve(self));
  const edits = rewriteMentions(root, moves, files, rewriteImports(moves, files));

  for (const [from, to] of moves) console.log(`${dryRun ? "would move" : "move"} ${relative(root, from)} -> ${relative(root, to)}`);
  for (const file of edits.keys()) console.log(`${dryRun ? "would edit" : "edit"} ${relative(root, moves.get(file) ?? file)}`);
  for (const file of unplaced) console.log(`not grouped (place it by hand, or add it to DOCKER_GROUPS): ${file}`);
  if (dryRun) return;

  // Contents first (at the old paths), then the moves, so `git mv` carries the edited files.
  for (const [file, text] of edits) writeFileSync(file, text);
  for (const [from, to] of moves) {
    mkdirSync(dirname(to), { recursive: true });
    if (isTracked(root, from)) execFileSync("git", ["mv", relative(root, from), relative(root, to)], { cwd: root, stdio: "inherit" });
    else renameSync(from, to);
  }
  for (const from of moves.keys()) {
    const dir = dirname(from);
    if (existsSync(dir) && readdirSync(dir).length === 0) rmdirSync(dir);
  }
  console.log(`${moves.size} file(s) moved, ${edits.size} file(s) edited.`);
}

main();
