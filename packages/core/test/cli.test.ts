/**
 * The real `kiln` binary (dist/cli/main.js, built in beforeAll) against a real local registry and a
 * temporary user project that installs a fixture builder plugin with npm.
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pushTestImage, type TestRegistry } from "../../test-utils/src/registry.js";
import { createRenderer } from "../src/cli/render.js";
import type { BuildEvent } from "../src/events.js";
import type { TempProject } from "./fixtures/plugins/projects.js";
import { CORE_DIR as CORE, KILN_BIN as BIN, runKiln, type KilnRun, type RunKilnOptions } from "./support/runKiln.js";
import { startCliFixture, type CliFixture } from "./support/cliProject.js";

function kiln(args: string[], options: Partial<RunKilnOptions> = {}): Promise<KilnRun> {
  return runKiln(args, { ...options, cwd: options.cwd ?? project.projectDir, env: { KILN_LOCK_DIR: lockDir, ...options.env } });
}

async function manifestStatus(uri: string): Promise<number> {
  const slash = uri.indexOf("/");
  const colon = uri.lastIndexOf(":");
  const res = await fetch(`http://${uri.slice(0, slash)}/v2/${uri.slice(slash + 1, colon)}/manifests/${uri.slice(colon + 1)}`, {
    method: "HEAD",
    headers: { accept: "application/vnd.oci.image.manifest.v1+json" },
  });
  return res.status;
}

let registry: TestRegistry;
let project: TempProject;
let lockDir: string;
let fixture: CliFixture | undefined;
const events = (stderr: string) =>
  stderr
    .trim()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as BuildEvent);

beforeAll(async () => {
  fixture = await startCliFixture("kiln-cli-locks-");
  ({ registry, project, lockDir } = fixture);
  const dir = project.projectDir;
  writeFileSync(join(dir, "Dockerfile"), "FROM scratch\nCOPY hello.txt /hello.txt\n");
  writeFileSync(join(dir, "hello.txt"), "hello\n");
  writeFileSync(
    join(dir, "images.ts"),
    `
import { Image } from "@kiln/core";
const registry: string = process.env.TEST_REGISTRY!;
export const api = Image.fromBase("kiln-test/busybox:1.35", { registry, name: "cli/api" }).withEnvVars({ RUN: process.env.RUN_ID ?? "1" });
export const worker = api.withEnvVars({ ROLE: "worker" }).clone({ name: "cli/worker" });
export default api;
`,
  );
  writeFileSync(
    join(dir, "images.mjs"),
    `
import { Image } from "@kiln/core";
export const fromDockerfile = Image.fromDockerfile("./Dockerfile", { registry: process.env.TEST_REGISTRY, name: "cli/df" });
export const base = Image.fromBase("kiln-test/busybox:1.35");
`,
  );
}, 300_000);

afterAll(() => fixture?.stop());

describe("kiln (no command, --help, --version)", () => {
  it("prints help for kiln and for every command, with examples", async () => {
    const main = await kiln(["--help"]);
    expect(main.code).toBe(0);
    for (const command of ["build", "plan", "explain", "dockerfile", "check", "plugins"]) {
      expect(main.stdout).toContain(`  ${command} `);
      const help = await kiln([command, "--help"]);
      expect(help.code).toBe(0);
      expect(help.stdout).toContain(`Usage: kiln ${command}`);
      expect(help.stdout).toContain("Examples:");
    }
  });

  it("start-up is lean: the entry statically imports only node builtins; commands load on demand", () => {
    const entry = readFileSync(BIN, "utf8");
    const staticImports = [...entry.matchAll(/^import\s.*?from\s+"([^"]+)"/gm)].map((m) => m[1]);
    expect(staticImports.every((spec) => /^(node:)?[a-z_]+$/.test(spec!))).toBe(true);
    expect(entry).not.toMatch(/tsx|tar-stream|RegistryClient|ImageBuildEngine/);
    expect(entry).toMatch(/import\("\.\.\/run-[A-Z0-9]+\.js"\)/);
  });

  it("--version prints the package version; bad usage exits 2", async () => {
    const version = JSON.parse(readFileSync(join(CORE, "package.json"), "utf8")).version;
    expect((await kiln(["--version"])).stdout.trim()).toBe(version);
    expect((await kiln(["frobnicate"])).code).toBe(2);
    const noSpec = await kiln(["build"]);
    expect(noSpec.code).toBe(2);
    expect(noSpec.stderr).toContain("expects one spec file");
    const badPlatform = await kiln(["build", "images.ts", "--platform", "linux/s390x"], { env: { TEST_REGISTRY: registry.host } });
    expect(badPlatform.code).toBe(2);
    expect(badPlatform.stderr).toContain('Invalid --platform "linux/s390x"');
    const unknownFlag = await kiln(["plan", "images.ts", "--frobnicate"]);
    expect(unknownFlag.code).toBe(2);
  });
});

describe("kiln plugins", () => {
  it("lists the discovered builder and checker with their package", async () => {
    const run = await kiln(["plugins", "--json"]);
    expect(run.code).toBe(0);
    const listed = JSON.parse(run.stdout);
    expect(listed.imageBuilders).toEqual([{ name: "fixture_push", package: "kiln-fixture-cli", version: "1.0.0", entry: "./lib/index.js#FixturePushBuilder" }]);
    expect(listed.imageCheckers.map((c: { name: string }) => c.name)).toEqual(["fixture_registry"]);
    const text = await kiln(["plugins"]);
    expect(text.stdout).toMatch(/fixture_push\s+kiln-fixture-cli@1\.0\.0/);
  });
});

describe("kiln build", () => {
  it("builds a .ts spec's export with the only installed builder: NDJSON events on stderr, the URI on stdout", async () => {
    const env = { TEST_REGISTRY: registry.host, RUN_ID: `build-${Date.now()}` };
    const run = await kiln(["build", "images.ts#api", "--json"], { env });
    expect(run.stderr).not.toContain("kiln:");
    expect(run.code).toBe(0);
    const uri = run.stdout.trim();
    expect(uri).toMatch(new RegExp(`^${registry.host}/cli/api:[0-9a-f]{32}$`));
    expect(await manifestStatus(uri)).toBe(200);
    const types = events(run.stderr).map((e) => e.type);
    // Checked again under the build lock before building (another process may have pushed meanwhile).
    expect(types).toEqual([
      "check.start",
      "check.result",
      "check.start",
      "check.result",
      "build.start",
      "build.step",
      "build.log",
      "build.step",
      "push.progress",
      "push.progress",
      "push.done",
      "done",
    ]);
    expect(events(run.stderr).at(-1)).toMatchObject({ type: "done", built: true, uri });

    // Second run: the checker finds it, nothing is built.
    const again = await kiln(["build", "images.ts#api", "--json"], { env });
    expect(again.code).toBe(0);
    expect(again.stdout.trim()).toBe(uri);
    expect(events(again.stderr).map((e) => e.type)).toEqual(["check.start", "check.result", "done"]);
    expect(events(again.stderr)[1]).toMatchObject({ result: "present" });
  });

  it("plain lines when piped; --dry-run builds nothing, even a Dockerfile image", async () => {
    const run = await kiln(["build", "images.mjs", "--dry-run"], { env: { TEST_REGISTRY: registry.host } });
    expect(run.code).toBe(0);
    const uris = run.stdout.trim().split("\n");
    expect(uris).toContain("kiln-test/busybox:1.35");
    const dfUri = uris.find((u) => u.includes("/cli/df:"));
    expect(dfUri).toMatch(new RegExp(`^${registry.host}/cli/df:[0-9a-f]{32}$`));
    expect(await manifestStatus(dfUri!)).toBe(404);
    // The URI heads its block of lines (issue 15): not repeated on each.
    expect(run.stderr).toMatch(new RegExp(`^${dfUri!.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:\n(?:  .*\n)*?  would build with fixture_push`, "m"));
    expect(run.stderr).not.toContain("\x1b[");
  });

  it("a failing build exits 1 with the message and hint, credentials redacted", async () => {
    const run = await kiln(["build", "images.ts#worker"], {
      env: { TEST_REGISTRY: registry.host, RUN_ID: `fail-${Date.now()}`, KILN_FIXTURE_FAIL: "push to https://ci:t0ps3cret@reg.example/v2 refused" },
    });
    expect(run.code).toBe(1);
    expect(run.stdout).toBe("");
    expect(run.stderr).toContain("Builder fixture_push failed to build");
    expect(run.stderr).toContain("hint:");
    expect(run.stderr).not.toContain("t0ps3cret");
  });

  it("SIGINT cancels: exit 130, no URI reported, nothing pushed, no lock left", async () => {
    const env = { TEST_REGISTRY: registry.host, RUN_ID: `sigint-${Date.now()}`, KILN_FIXTURE_BUILD_DELAY_MS: "20000" };
    let sent = false;
    const run = await kiln(["build", "images.ts#api", "--json"], {
      env,
      onStderr: (text, child) => {
        if (!sent && text.includes('"build.step"')) {
          sent = true;
          child.kill("SIGINT");
        }
      },
    });
    expect(sent).toBe(true);
    expect(run.code).toBe(130);
    expect(run.stdout).toBe("");
    const last = events(run.stderr).at(-1)!;
    expect(last).toMatchObject({ type: "error", error: { code: "KILN_CANCELLED" } });
    const dry = await kiln(["build", "images.ts#api", "--dry-run"], { env });
    expect(await manifestStatus(dry.stdout.trim())).toBe(404);
    expect(readdirSync(lockDir).filter((f) => f.endsWith(".lock"))).toEqual([]);
  });

  it("a missing export is a usage error listing the Image exports", async () => {
    const run = await kiln(["build", "images.ts#nope"], { env: { TEST_REGISTRY: registry.host } });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('no Image export named "nope"; its Image exports: api, worker');
  });
});

describe("kiln plan, check, explain, dockerfile", () => {
  it("plan: exists and action per image, checked against the registry", async () => {
    const env = { TEST_REGISTRY: registry.host, RUN_ID: `plan-${Date.now()}` };
    const built = await kiln(["build", "images.ts#worker"], { env });
    expect(built.code).toBe(0);
    const run = await kiln(["plan", "images.ts", "--json"], { env });
    expect(run.code).toBe(0);
    const rows = run.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(rows.map((r) => [r.export, r.exists, r.action])).toEqual([
      ["api", false, "build"],
      ["worker", true, "skip"],
    ]);
    expect(rows[1].uri).toBe(built.stdout.trim());
    // The answer comes from the builder's own checkers, as `kiln build` would ask them.
    expect(rows.map((r) => r.checkedBy)).toEqual(["fixture_push", "fixture_push"]);
    const table = await kiln(["plan", "images.ts"], { env });
    expect(table.stdout).toMatch(/cli\/worker:[0-9a-f]{32}\s+true\s+skip/);
  });

  it("check: exit 0 present, 1 absent (or missing platform), 2 could not tell", async () => {
    await pushTestImage(registry, "cli/checked", "v1", "oci", { platforms: ["linux/amd64"] });
    const present = await kiln(["check", `${registry.host}/cli/checked:v1`]);
    expect(present.code).toBe(0);
    expect(present.stdout).toContain("present");
    const arm = await kiln(["check", `${registry.host}/cli/checked:v1`, "--platform", "linux/amd64,linux/arm64", "--json"]);
    expect(arm.code).toBe(1);
    expect(JSON.parse(arm.stdout)).toMatchObject({ status: "absent", missing: ["linux/arm64"] });
    expect((await kiln(["check", `${registry.host}/cli/checked:v2`])).code).toBe(1);
    const unreachable = await kiln(["check", "127.0.0.1:9/cli/checked:v1"]);
    expect(unreachable.code).toBe(2);
    expect(unreachable.stderr).toContain("could not tell");
  });

  it("explain lists the hash inputs; dockerfile renders the Dockerfile", async () => {
    const env = { TEST_REGISTRY: registry.host };
    const explained = await kiln(["explain", "images.ts#api", "--json"], { env });
    expect(explained.code).toBe(0);
    const parsed = JSON.parse(explained.stdout);
    expect(parsed.tag).toMatch(/^[0-9a-f]{32}$/);
    expect(parsed.explanation.tag).toBe(parsed.tag);
    expect(parsed.explanation.inputs.length).toBeGreaterThan(0);
    const text = await kiln(["explain", "images.ts#api"], { env });
    expect(text.stdout).toContain(`tag ${parsed.tag}`);
    const dockerfile = await kiln(["dockerfile", "images.ts#api"], { env });
    expect(dockerfile.code).toBe(0);
    expect(dockerfile.stdout).toContain("FROM kiln-test/busybox:1.35");
  });
});

describe("TTY progress renderer", () => {
  it("redraws a live block in place with per-layer bars, then leaves a summary line", async () => {
    let output = "";
    const out = { write: (s: string) => ((output += s), true), columns: 100, isTTY: true } as unknown as NodeJS.WriteStream;
    const renderer = createRenderer("tty", out);
    const image = "r/app:1";
    const at = (e: Record<string, unknown>) => renderer.onEvent({ time: Date.now(), image, ...e } as BuildEvent);
    at({ type: "check.start", checker: "c", platforms: ["linux/amd64"] });
    at({ type: "build.step", step: "RUN apt-get install", index: 2, total: 5 });
    await new Promise((r) => setTimeout(r, 80));
    at({ type: "push.progress", layer: "abcdef123456789", status: "Pushing", current: 512, total: 1024 });
    await new Promise((r) => setTimeout(r, 80));
    at({ type: "done", uri: image, durationMs: 1200, built: true, dryRun: false });
    renderer.close();
    expect(output).toContain("▸ [2/5] RUN apt-get install");
    expect(output).toContain("abcdef123456 ████████████░░░░░░░░░░░░ Pushing");
    expect(output).toMatch(/\x1b\[\d+A\x1b\[0J/);
    expect(output).toContain("✔ r/app:1: built r/app:1 (1.2s)");
  });
});
