/**
 * Proof that the template works where plugin authors use it: outside this monorepo, installed with
 * npm from a packed @kiln/core, built, tested — and then discovered by a separate consumer project
 * through `kiln plugins`, and used by `kiln build`.
 *
 * Only the npm registry is contacted (for typescript/tsup/vitest and core's few dependencies), with
 * --prefer-offline so a warm npm cache makes the run local.
 */
import { execFile } from "node:child_process";
import { cp, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const templateDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const coreDir = resolve(templateDir, "../core");
/** Files that belong to this checkout, not to a fresh copy of the template. */
const NOT_COPIED = new Set(["node_modules", "dist", ".turbo", "test-results.json", "outside-workspace.test.ts", ".kiln-cache"]);
/** The peer range AUTHORING.md tells authors to use: it must install against this (0.x) core. */
const DOCUMENTED_PEER_RANGE = ">=0.0.0 <2.0.0";

/** A clean environment: nothing inherited from pnpm (npm_config_*), turbo or the outer vitest. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^(npm_|pnpm_|PNPM_|VITEST|TURBO_|NODE_OPTIONS$|TEST$|KILN_)/i.test(key)) continue;
    env[key] = value;
  }
  return { ...env, CI: "true", NO_COLOR: "1", ...extra };
}

function run(command: string, args: string[], cwd: string, env = cleanEnv()): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    execFile(command, args, { cwd, env, maxBuffer: 32 * 1024 * 1024, timeout: 240_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} ${args.join(" ")} (in ${cwd}) failed: ${error.message}\n${stdout}\n${stderr}`));
      else resolvePromise({ stdout, stderr });
    });
  });
}

const npmInstall = ["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"];

describe("the plugin template outside the workspace", () => {
  let work: string;
  let coreTarball: string;
  let pluginDir: string;
  let consumerDir: string;
  let storeDir: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "kiln-template-outside-"));
    storeDir = join(work, "catalogue");
    // 1. Pack @kiln/core as it would be published (it must be built: `pnpm --filter @kiln/core build`).
    await readFile(join(coreDir, "dist", "index.js")).catch(() => {
      throw new Error("@kiln/core is not built; run `pnpm --filter @kiln/core build` (turbo does it before tests)");
    });
    await run("pnpm", ["pack", "--pack-destination", work], coreDir, { ...cleanEnv() });
    const tarball = (await readdir(work)).find((f) => f.endsWith(".tgz"));
    if (!tarball) throw new Error(`pnpm pack left no tarball in ${work}`);
    coreTarball = join(work, tarball);
    // A tarball packed while core's dist/ was being rebuilt lacks its types; say so instead of failing later.
    const listing = (await run("tar", ["-tzf", coreTarball], work)).stdout;
    for (const file of ["package/dist/index.js", "package/dist/index.d.ts", "package/dist/testing/index.d.ts", "package/dist/cli/main.js"]) {
      if (!listing.split("\n").includes(file)) throw new Error(`the packed @kiln/core lacks ${file}; rebuild it (pnpm --filter @kiln/core build)`);
    }

    // 2. Copy the template the way an author forks it, and point its workspace: ranges at the tarball.
    pluginDir = join(work, "my-kiln-plugin");
    await cp(templateDir, pluginDir, { recursive: true, filter: (src) => !NOT_COPIED.has(basename(src)) });
    const pkgFile = join(pluginDir, "package.json");
    const pkg = JSON.parse(await readFile(pkgFile, "utf8")) as Record<string, Record<string, string>>;
    for (const field of ["dependencies", "devDependencies", "peerDependencies"]) {
      for (const [name, range] of Object.entries(pkg[field] ?? {})) {
        if (!range.startsWith("workspace:")) continue;
        if (name !== "@kiln/core") throw new Error(`unexpected workspace dependency ${name} in the template`);
        pkg[field]![name] = field === "peerDependencies" ? DOCUMENTED_PEER_RANGE : `file:${coreTarball}`;
      }
    }
    await writeFile(pkgFile, `${JSON.stringify(pkg, null, 2)}\n`);
    consumerDir = join(work, "consumer");
  }, 300_000);

  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("installs from the packed core, builds and passes its own tests (conformance included)", async () => {
    expect(await readFile(join(templateDir, "AUTHORING.md"), "utf8")).toContain(`"@kiln/core": "${DOCUMENTED_PEER_RANGE}"`);
    await run("npm", npmInstall, pluginDir);
    await run("npm", ["run", "build"], pluginDir);
    const typecheck = run("npx", ["tsc", "-p", "tsconfig.json", "--noEmit"], pluginDir);
    // Outside the monorepo the template writes no report of its own; ask vitest for one here.
    const reportFile = join(work, "plugin-test-results.json");
    const { stdout } = await run("npm", ["test", "--", "--reporter=default", "--reporter=json", `--outputFile.json=${reportFile}`], pluginDir);
    await typecheck;
    expect(await readdir(pluginDir)).not.toContain("test-results.json");
    const report = JSON.parse(await readFile(reportFile, "utf8")) as {
      numPassedTests: number;
      numFailedTests: number;
      testResults: Array<{ assertionResults: Array<{ fullName: string; status: string }> }>;
    };
    expect(report.numFailedTests, stdout).toBe(0);
    const names = report.testResults.flatMap((r) => r.assertionResults.filter((a) => a.status === "passed").map((a) => a.fullName));
    expect(names.some((n) => n.includes("ImageChecker conformance"))).toBe(true);
    expect(names.some((n) => n.includes("ImageBuilder conformance"))).toBe(true);
  }, 300_000);

  it("is discovered by a separate consumer project and builds through `kiln build`", async () => {
    const { stdout: packed } = await run("npm", ["pack", "--pack-destination", work, "--loglevel=error"], pluginDir);
    const pluginTarball = join(work, packed.trim().split("\n").pop()!);
    await rm(consumerDir, { recursive: true, force: true });
    await cp(join(templateDir, "test", "fixtures", "consumer"), consumerDir, { recursive: true });
    const consumerPkg = {
      name: "kiln-consumer",
      private: true,
      type: "module",
      dependencies: { "@kiln/core": `file:${coreTarball}`, "kiln-plugin-template": `file:${pluginTarball}` },
    };
    await writeFile(join(consumerDir, "package.json"), `${JSON.stringify(consumerPkg, null, 2)}\n`);
    await run("npm", npmInstall, consumerDir);
    const kiln = join(consumerDir, "node_modules", ".bin", "kiln");

    const { stdout } = await run(kiln, ["plugins", "--json"], consumerDir);
    const listed = JSON.parse(stdout) as {
      imageBuilders: Array<{ name: string; package: string }>;
      imageCheckers: Array<{ name: string; package: string }>;
      problems: unknown[];
    };
    expect(listed.imageBuilders).toContainEqual(expect.objectContaining({ name: "my_builder", package: "kiln-plugin-template" }));
    expect(listed.imageCheckers).toContainEqual(expect.objectContaining({ name: "my_checker", package: "kiln-plugin-template" }));
    expect(listed.problems).toEqual([]);

    // The consumer's kiln.config.json selects my_builder; the build lands in the catalogue.
    const env = cleanEnv({ KILN_MY_BUILDER_STORE: storeDir });
    const built = await run(kiln, ["build", "image.mjs"], consumerDir, env);
    const uri = built.stdout.trim().split("\n").pop()!;
    expect(uri).toMatch(/^consumer\/hello:[0-9a-f]{32}$/);
    const records = await readdir(join(storeDir, "images"));
    expect(records).toHaveLength(1);
    const record = JSON.parse(await readFile(join(storeDir, "images", records[0]!), "utf8")) as { uri: string };
    expect(record.uri).toBe(uri);

    // Built once: the plan now says the checker finds it.
    const plan = await run(kiln, ["plan", "image.mjs", "--json"], consumerDir, env);
    expect(plan.stdout).toContain(uri);
    expect(plan.stdout).toMatch(/"exists":\s*true/);
  }, 300_000);
});
