/**
 * Issue 15, through the real `kiln` binary (dist/cli/main.js) in a project that installs fixture
 * plugins with npm: `kiln plugins` verifies every entry, `--registry` keeps a spec's own registry,
 * `--checker` chooses the checker chain (an unknown name exits 2, listing the installed ones).
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeProject, type TempProject } from "./fixtures/plugins/projects.js";
import { CORE_DIR as CORE, runKiln, type KilnRun } from "./support/runKiln.js";
import { buildCoreCli } from "./support/cliProject.js";

const lockDir = mkdtempSync(join(tmpdir(), "kiln-day-one-locks-"));

function kiln(cwd: string, args: string[], env: Record<string, string> = {}): Promise<KilnRun> {
  return runKiln(args, { cwd, env: { KILN_LOCK_DIR: lockDir, ...env }, timeoutMs: 120_000 });
}

let broken: TempProject;
let good: TempProject;
beforeAll(() => {
  buildCoreCli();
  broken = makeProject(
    "npm",
    {},
    {
      "kiln-fixture-cli": "cli-plugin",
      "kiln-fixture-missing-export": "missing-export-plugin",
      "kiln-fixture-missing-file": "missing-file-plugin",
      "kiln-fixture-wrong-shape": "wrong-shape-plugin",
    },
    { type: "module" },
  );
  good = makeProject("npm", {}, { "kiln-fixture-cli": "cli-plugin" }, { type: "module" });
  mkdirSync(join(good.projectDir, "node_modules/@kiln"), { recursive: true });
  symlinkSync(CORE, join(good.projectDir, "node_modules/@kiln/core"));
  writeFileSync(
    join(good.projectDir, "images.ts"),
    `
import { Image } from "@kiln/core";
export const own = Image.fromBase("kiln-test/busybox:1.35", { registry: "localhost:5998/acme", name: "own" }).withEnvVars({ A: "1" });
export const bare = Image.fromBase("kiln-test/busybox:1.35", { name: "bare" }).withEnvVars({ A: "1" });
`,
  );
}, 600_000);
afterAll(() => {
  broken?.cleanup();
  good?.cleanup();
  rmSync(lockDir, { recursive: true, force: true });
});

describe("kiln plugins verifies every entry (issue 15 item 5)", () => {
  it("a missing file, a missing export and non-builder/non-checker exports are reported, exit 1", async () => {
    const run = await kiln(broken.projectDir, ["plugins", "--json"]);
    expect(run.code).toBe(1);
    const report = JSON.parse(run.stdout);
    const byName = (name: string) => report.problems.find((p: { name?: string }) => p.name === name)?.message as string | undefined;
    expect(byName("ghost_builder")).toMatch(/does not exist/);
    expect(byName("typo_builder")).toMatch(/no such export/);
    expect(byName("shapeless_builder")).toMatch(/wrong shape.*ImageBuilder/);
    expect(byName("shapeless_checker")).toMatch(/wrong shape.*ImageChecker/);
    // The sound plugin next to them is fine.
    expect(byName("fixture_push")).toBeUndefined();
    expect(report.imageBuilders.find((b: { name: string }) => b.name === "fixture_push").broken).toBeUndefined();
    expect(report.imageBuilders.find((b: { name: string }) => b.name === "typo_builder").broken).toBe(true);

    const text = await kiln(broken.projectDir, ["plugins"]);
    expect(text.code).toBe(1);
    expect(text.stdout).toContain("Problems:");
    expect(text.stdout).toMatch(/typo_builder .*\(broken, see Problems\)/);
  }, 180_000);

  it("a project whose plugins are all sound exits 0", async () => {
    const run = await kiln(good.projectDir, ["plugins"]);
    expect(run.code).toBe(0);
    expect(run.stdout).not.toContain("Problems:");
  }, 120_000);
});

describe("--registry is for images declared without one (issue 15 item 6)", () => {
  it("build --dry-run and plan keep the spec's own registry and apply --registry to the others", async () => {
    const run = await kiln(good.projectDir, ["build", "images.ts", "--dry-run", "--registry", "localhost:5999", "--checker", "fixture_registry"]);
    const uris = run.stdout.trim().split("\n");
    expect(uris.find((u) => u.includes("/own:"))).toMatch(/^localhost:5998\/acme\/own:/);
    expect(uris.find((u) => u.includes("/bare:"))).toMatch(/^localhost:5999\/bare:/);
    const plan = await kiln(good.projectDir, ["plan", "images.ts", "--json", "--registry", "localhost:5999"]);
    expect(plan.stdout, plan.stderr).not.toBe("");
    const rows = plan.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(rows.find((r: { export: string }) => r.export === "own").uri).toMatch(/^localhost:5998\/acme\/own:/);
    expect(rows.find((r: { export: string }) => r.export === "bare").uri).toMatch(/^localhost:5999\/bare:/);
  }, 180_000);
});

describe("--checker (issue 15 item 1)", () => {
  it("an unknown checker name exits 2, listing the installed checkers", async () => {
    const run = await kiln(good.projectDir, ["build", "images.ts#bare", "--registry", "localhost:5999", "--checker", "fixture_registy"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('Unknown image checker "fixture_registy"; available: fixture_registry');
    const env = await kiln(good.projectDir, ["plan", "images.ts#bare", "--registry", "localhost:5999"], { KILN_IMAGE_CHECKERS: "nope" });
    expect(env.stdout + env.stderr).toContain('Unknown image checker "nope"');
  }, 120_000);
});
