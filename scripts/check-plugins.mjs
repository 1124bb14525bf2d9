#!/usr/bin/env node
// Keeps the published plugins alike: every one has a README, a `kiln` field the engine can read (with
// the apiVersion core speaks, and providers pointing at exports of its built entry), and tests that
// run @kiln/core/testing's conformance suite for each image builder and image checker it declares.
// A published plugin is a workspace package that is not private and has a `kiln` field or
// peer-depends on @kiln/core (a plugin that forgot its `kiln` field is still a plugin).
// Run by `pnpm lint`. `node scripts/check-plugins.mjs [--root DIR]`; exit 1 lists every problem.
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const PROVIDER_KINDS = ["imageBuilders", "imageCheckers", "credentialProviders", "lockProviders", "checkCaches"];
/** Which conformance suite of @kiln/core/testing covers which kind of provider. */
const SUITES = { imageBuilders: "describeBuilderConformance", imageCheckers: "describeCheckerConformance" };
/**
 * Providers whose conformance run is still to be written, by package: reported, not failed. An entry
 * that is covered after all is an error, so this list only shrinks.
 */
const CONFORMANCE_PENDING = {};

function parseArgs(argv) {
  const at = argv.indexOf("--root");
  return { root: resolve(at >= 0 ? argv[at + 1] : join(dirname(fileURLToPath(import.meta.url)), "..")) };
}

function readJson(file) {
  return JSON.parse(readFileSync(file, "utf8"));
}

function filesUnder(dir, accept) {
  if (!existsSync(dir)) return [];
  const out = [];
  for (const name of readdirSync(dir)) {
    if (name === "node_modules" || name === "dist" || name === "fixtures") continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...filesUnder(path, accept));
    else if (accept(name)) out.push(path);
  }
  return out;
}

/** The apiVersion @kiln/core speaks (KILN_API_VERSION in packages/core/src/builder.ts). */
function coreApiVersion(root) {
  const file = join(root, "packages/core/src/builder.ts");
  if (!existsSync(file)) return undefined;
  const match = /export const KILN_API_VERSION\s*=\s*(\d+)/.exec(readFileSync(file, "utf8"));
  return match ? Number(match[1]) : undefined;
}

/** Names exported by a package's src/index.ts (`export { A, B as C }`, `export class/function/const X`). */
function exportedNames(pkgDir) {
  const file = join(pkgDir, "src/index.ts");
  if (!existsSync(file)) return new Set();
  const text = readFileSync(file, "utf8");
  const names = new Set();
  for (const [, body] of text.matchAll(/export\s+\{([^}]*)\}/g)) {
    for (const item of body.split(",")) {
      const name = item
        .trim()
        .replace(/^type\s+/, "")
        .split(/\s+as\s+/)
        .pop()
        ?.trim();
      if (name) names.add(name);
    }
  }
  for (const [, name] of text.matchAll(/export\s+(?:abstract\s+)?(?:class|function|const|let)\s+([A-Za-z_$][\w$]*)/g)) names.add(name);
  return names;
}

/** Titles passed to each conformance suite in the package's tests: `describeXConformance("Title …", …)`. */
function conformanceTitles(pkgDir) {
  const titles = Object.fromEntries(Object.values(SUITES).map((suite) => [suite, []]));
  for (const file of filesUnder(join(pkgDir, "test"), (name) => /\.(c|m)?[jt]s$/.test(name))) {
    const text = readFileSync(file, "utf8");
    if (!text.includes("@kiln/core/testing")) continue;
    for (const suite of Object.values(SUITES)) {
      for (const [, title] of text.matchAll(new RegExp(`\\b${suite}\\(\\s*["'\`]([^"'\`]+)["'\`]`, "g"))) titles[suite].push(title);
    }
  }
  return titles;
}

function isPlugin(pkg) {
  if (pkg.private || pkg.name === "@kiln/core") return false;
  return pkg.kiln !== undefined || pkg.peerDependencies?.["@kiln/core"] !== undefined;
}

export function checkPlugins(root) {
  const problems = [];
  const notes = [];
  const apiVersion = coreApiVersion(root);
  const packagesDir = join(root, "packages");
  const checked = [];
  for (const name of existsSync(packagesDir) ? readdirSync(packagesDir).sort() : []) {
    const dir = join(packagesDir, name);
    const manifest = join(dir, "package.json");
    if (!existsSync(manifest)) continue;
    const pkg = readJson(manifest);
    if (!isPlugin(pkg)) continue;
    checked.push(pkg.name);
    const where = `${pkg.name} (${relative(root, dir)})`;
    const fail = (message) => problems.push(`${where}: ${message}`);

    const readme = join(dir, "README.md");
    if (!existsSync(readme) || readFileSync(readme, "utf8").trim().length === 0) fail("has no README.md");
    else if (!(pkg.files ?? []).includes("README.md")) fail('does not publish its README.md (add it to "files")');

    const kiln = pkg.kiln;
    if (kiln === undefined || kiln === null || typeof kiln !== "object") {
      fail('has no "kiln" field: the engine finds plugins through it ({ "apiVersion": 1, "imageBuilders": { … } })');
      continue;
    }
    if (kiln.apiVersion !== apiVersion) fail(`"kiln.apiVersion" is ${JSON.stringify(kiln.apiVersion)}, core speaks ${apiVersion}`);
    const kinds = PROVIDER_KINDS.filter((kind) => kiln[kind] !== undefined);
    if (kinds.length === 0) fail(`"kiln" declares no provider (one of ${PROVIDER_KINDS.join(", ")})`);
    for (const key of Object.keys(kiln)) {
      if (key !== "apiVersion" && !PROVIDER_KINDS.includes(key)) fail(`"kiln.${key}" is not a provider kind the engine knows`);
    }

    const exported = exportedNames(dir);
    const titles = conformanceTitles(dir);
    const pending = new Set(CONFORMANCE_PENDING[pkg.name] ?? []);
    for (const kind of kinds) {
      for (const [provider, target] of Object.entries(kiln[kind])) {
        const match = /^(\.\/[^#]+)#([A-Za-z_$][\w$]*)$/.exec(String(target));
        if (!match) {
          fail(`"kiln.${kind}.${provider}" is ${JSON.stringify(target)}, expected "./dist/<file>.js#<ExportName>"`);
          continue;
        }
        const [, file, exportName] = match;
        if (!/^\.\/dist\/.+\.js$/.test(file)) fail(`"kiln.${kind}.${provider}" points at ${file}, not a built file in ./dist`);
        else if (!(pkg.files ?? []).includes("dist")) fail(`"kiln.${kind}.${provider}" points into dist, which is not published ("files")`);
        if (file === "./dist/index.js" && !exported.has(exportName)) fail(`"kiln.${kind}.${provider}" names ${exportName}, which src/index.ts does not export`);
        const suite = SUITES[kind];
        if (!suite) continue;
        const covered = titles[suite].some((title) => title === exportName || title.startsWith(`${exportName} `));
        if (pending.has(exportName)) {
          if (covered) fail(`${exportName} now runs ${suite}: remove it from CONFORMANCE_PENDING in scripts/check-plugins.mjs`);
          else notes.push(`${where}: ${exportName} (${kind}.${provider}) has no ${suite} run yet (listed as pending)`);
        } else if (!covered) {
          fail(
            `${exportName} (${kind}.${provider}) is not run through ${suite} from @kiln/core/testing in test/ (a suite titled "${exportName}" or "${exportName} (…)")`,
          );
        }
      }
    }
  }
  return { checked, problems, notes };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { root } = parseArgs(process.argv.slice(2));
  const { checked, problems, notes } = checkPlugins(root);
  for (const note of notes) console.log(`note: ${note}`);
  if (problems.length > 0) {
    console.error(`check-plugins: ${problems.length} problem(s) in the published plugins:`);
    for (const problem of problems) console.error(`  - ${problem}`);
    process.exit(1);
  }
  console.log(`check-plugins: ${checked.length} published plugins have a README, a kiln field and conformance runs (${checked.join(", ")}).`);
}
