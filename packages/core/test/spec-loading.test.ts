/**
 * Spec files as an npm user has them: @kiln/core packed as it would be published, installed with npm
 * into a project made by `npm init -y` (CommonJS: npm writes "type": "commonjs"), and the installed
 * `kiln` loading TypeScript and JavaScript specs of every module format, with no TypeScript compiler
 * or tsx installed. Where a spec cannot load, the error names the cause and the fix.
 *
 * Only the npm registry is contacted (core's few dependencies), with --prefer-offline.
 */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const CORE = resolve(import.meta.dirname, "..");

/** A clean environment: nothing inherited from pnpm (npm_config_*), turbo, the outer vitest or KILN_*. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^(npm_|pnpm_|PNPM_|VITEST|TURBO_|NODE_OPTIONS$|TEST$|KILN_)/i.test(key)) continue;
    env[key] = value;
  }
  return { ...env, NO_COLOR: "1", ...extra };
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], cwd: string, env = cleanEnv()): Promise<Run> {
  return new Promise((resolvePromise) => {
    execFile(command, args, { cwd, env, maxBuffer: 32 * 1024 * 1024, timeout: 240_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : -1) : 0;
      resolvePromise({ code, stdout, stderr });
    });
  });
}

let work: string;
let project: string;
let kilnBin: string;

function kiln(args: string[], options: { cwd?: string; nodeArgs?: string[] } = {}): Promise<Run> {
  return run(process.execPath, [...(options.nodeArgs ?? []), kilnBin, ...args], options.cwd ?? project);
}

async function files(dir: string, contents: Record<string, string>): Promise<void> {
  for (const [name, text] of Object.entries(contents)) {
    await mkdir(join(dir, name, ".."), { recursive: true });
    await writeFile(join(dir, name), text);
  }
}

beforeAll(async () => {
  if (!process.env.KILN_TEST_SKIP_BUILD) {
    const built = await run("pnpm", ["exec", "tsup"], CORE);
    if (built.code !== 0) throw new Error(`building @kiln/core failed:\n${built.stdout}\n${built.stderr}`);
  }
  work = await mkdtemp(join(tmpdir(), "kiln-spec-loading-"));
  const packed = await run("pnpm", ["pack", "--pack-destination", work], CORE);
  if (packed.code !== 0) throw new Error(`pnpm pack failed:\n${packed.stdout}\n${packed.stderr}`);
  const tarball = join(work, (await readdir(work)).find((f) => f.endsWith(".tgz"))!);
  project = join(work, "my-app");
  await mkdir(project);
  for (const [command, args] of [
    ["npm", ["init", "-y"]],
    ["npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error", tarball]],
  ] as const) {
    const step = await run(command, [...args], project);
    if (step.code !== 0) throw new Error(`${command} ${args.join(" ")} failed:\n${step.stdout}\n${step.stderr}`);
  }
  kilnBin = join(project, "node_modules/@kiln/core/bin/kiln.js");

  await files(project, {
    // TypeScript in a CommonJS package: compiled to CommonJS, as tsc would; `import` becomes require(esm).
    "images.ts": `import { Image } from "@kiln/core";
import { basename } from "node:path";
import { helperEnv } from "./helper";
import type { Unused } from "./types";
enum Mode { Prod = "prod" }
const from: Unused = "ts";
export const api = Image.fromBase("kiln-test/busybox:1.35", { name: "cjs/api" }).withEnvVars({ ...helperEnv, MODE: Mode.Prod, DIR: basename(__dirname), FROM: from });
export const worker = api.withEnvVars({ ROLE: "worker" }).clone({ name: "cjs/worker" });
export default api;
`,
    "helper.ts": `export const helperEnv: Record<string, string> = { HELPER: "yes" };\n`,
    "types.ts": `export type Unused = string;\n`,
    // Plain CommonJS JavaScript with require().
    "images.js": `const { Image } = require("@kiln/core");
exports.api = Image.fromBase("kiln-test/busybox:1.35", { name: "cjs/api" }).withEnvVars({ FROM: "js" });
`,
    // An ES module spec in the CommonJS project, importing a CommonJS TypeScript helper without extension.
    "images.mts": `import { Image } from "@kiln/core";
import { helperEnv } from "./helper";
const mode = await Promise.resolve("mts");
export default Image.fromBase("kiln-test/busybox:1.35", { name: "mts/api" }).withEnvVars({ ...helperEnv, FROM: mode, URL: import.meta.url.slice(-10) });
`,
    "images.cts": `import { Image } from "@kiln/core";
const path = require("node:path");
export const api = Image.fromBase("kiln-test/busybox:1.35", { name: "cts/api" }).withEnvVars({ FROM: path.extname(__filename) });
`,
    "esm-syntax.js": `import { Image } from "@kiln/core";\nexport const api = Image.fromBase("kiln-test/busybox:1.35");\n`,
    "broken.ts": `import { Image } from "@kiln/core";\nexport const api = Image.fromBase("kiln-test/busybox:1.35")\n  .withEnvVars({ A: 1 as });\n`,
    // An ES module package inside the project: `.ts` is an ES module there; `./lib.js` names lib.ts.
    "esm/package.json": `{ "type": "module" }\n`,
    "esm/lib.ts": `export const libEnv: { LIB: string } = { LIB: "esm" };\n`,
    "esm/images.ts": `import { Image } from "@kiln/core";
import { libEnv } from "./lib.js";
const n: number = await Promise.resolve(2);
export const api = Image.fromBase("kiln-test/busybox:1.35", { name: "esm/api" }).withEnvVars({ ...libEnv, N: String(n), URL: import.meta.url.slice(-9) });
`,
    "esm/uses-require.ts": `const os = require("node:os");\nexport const a = os.EOL;\n`,
  });
}, 600_000);

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe("an npm project made with `npm init -y` (CommonJS)", () => {
  it("installs no TypeScript compiler: no tsx, no esbuild", async () => {
    expect(JSON.parse(await readFile(join(project, "package.json"), "utf8")).type).not.toBe("module");
    const installed = await readdir(join(project, "node_modules"));
    expect(installed).toContain("sucrase");
    expect(installed).not.toContain("tsx");
    expect(installed).not.toContain("esbuild");
    expect(installed).not.toContain("@esbuild");
  });

  it("`kiln plan images.ts` loads a TypeScript spec (enum, extensionless helper import, __dirname, named + default exports)", async () => {
    const plan = await kiln(["plan", "images.ts", "--json"]);
    expect(plan.stderr).not.toContain("kiln:");
    const rows = plan.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { export: string; uri: string });
    expect(rows.map((r) => r.export)).toEqual(["api", "worker"]);
    const dockerfile = await kiln(["dockerfile", "images.ts#default"]);
    expect(dockerfile.code).toBe(0);
    expect(dockerfile.stdout).toContain('ENV HELPER="yes" MODE="prod" DIR="my-app" FROM="ts"');
  }, 120_000);

  it("a CommonJS .js spec using require() loads (require(esm) of @kiln/core)", async () => {
    const explained = await kiln(["explain", "images.js", "--json"]);
    expect(explained.stderr).toBe("");
    expect(explained.code).toBe(0);
    expect(JSON.parse(explained.stdout).tag).toMatch(/^[0-9a-f]{32}$/);
    const dockerfile = await kiln(["dockerfile", "images.js"]);
    expect(dockerfile.stdout).toContain('ENV FROM="js"');
  }, 120_000);

  it(".mts (ES module, top-level await, import.meta) and .cts (CommonJS) specs load", async () => {
    const mts = await kiln(["dockerfile", "images.mts"]);
    expect(mts.stderr).toBe("");
    expect(mts.stdout).toContain('ENV HELPER="yes" FROM="mts" URL="images.mts"');
    const cts = await kiln(["dockerfile", "images.cts#api"]);
    expect(cts.stderr).toBe("");
    expect(cts.stdout).toContain('ENV FROM=".cts"');
  }, 120_000);

  it('in a "type": "module" package a .ts spec is an ES module: `./lib.js` finds lib.ts; top-level await', async () => {
    const run = await kiln(["dockerfile", "esm/images.ts"]);
    expect(run.stderr).toBe("");
    expect(run.stdout).toContain('ENV LIB="esm" N="2" URL="images.ts"');
  }, 120_000);

  it("without require(esm) (Node < 20.19, or turned off) the error names the cause and the fix", async () => {
    for (const spec of ["images.ts", "images.js"]) {
      const failed = await kiln(["plan", spec], { nodeArgs: ["--no-experimental-require-module"] });
      expect(failed.code).toBe(2);
      expect(failed.stderr).toContain(
        `Loading spec "${spec}" failed: the spec runs as CommonJS (${join(project, "package.json")} has no "type": "module") and require()s an ES module`,
      );
      expect(failed.stderr).toContain(
        `add "type": "module" to ${join(project, "package.json")}, or rename it to images.${spec.endsWith(".ts") ? "mts" : "mjs"}`,
      );
      expect(failed.stderr).toContain("Node ≥ 20.19");
      expect(failed.stderr).not.toContain('No "exports" main defined');
    }
  }, 120_000);

  it("ES module syntax in a CommonJS .js spec, and require in an ES module .ts spec: the error says which format and why", async () => {
    const esm = await kiln(["plan", "esm-syntax.js"]);
    expect(esm.code).toBe(2);
    expect(esm.stderr).toContain("the spec runs as CommonJS");
    expect(esm.stderr).toContain('add "type": "module"');
    expect(esm.stderr).toContain("esm-syntax.mjs");
    const cjs = await kiln(["plan", "esm/uses-require.ts"]);
    expect(cjs.code).toBe(2);
    expect(cjs.stderr).toContain(
      `the spec runs as an ES module (${join(project, "esm/package.json")} has "type": "module") but uses CommonJS: require is not defined`,
    );
    expect(cjs.stderr).toContain("uses-require.cts");
  }, 120_000);

  it("a TypeScript syntax error names the file, line and column", async () => {
    const broken = await kiln(["explain", "broken.ts"]);
    expect(broken.code).toBe(2);
    expect(broken.stderr).toContain(`${join(project, "broken.ts")}: Unexpected token (3:26)`);
    expect(broken.stderr).toContain("KILN_DEBUG=1");
  }, 120_000);
});
