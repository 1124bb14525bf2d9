/**
 * Promotion from the command line: `kiln plan` shows `promote`, `kiln build` promotes instead of
 * building, and `kiln promote <ref> <target-registry>` copies by hand — the real `kiln` binary
 * (dist/cli/main.js, built in beforeAll), a temporary project with the fixture builder plugin, a
 * staging registry behind htpasswd Basic auth (credentials from a DOCKER_CONFIG, as users have them)
 * and an open target registry.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BuildEvent } from "../src/events.js";
import { RegistryClient } from "../src/registry/client.js";
import { pushTestImage, startRegistry, type TestRegistry } from "../../test-utils/src/registry.js";
import type { TempProject } from "./fixtures/plugins/projects.js";
import { CORE_DIR as CORE, runKiln, type KilnRun } from "./support/runKiln.js";
import { buildCoreCli, linkedCliProject } from "./support/cliProject.js";

const scratch = mkdtempSync(join(tmpdir(), "kiln-promote-cli-"));
let staging: TestRegistry;
let target: TestRegistry;
let project: TempProject;
let env: Record<string, string>;

function kiln(args: string[], extraEnv: Record<string, string> = {}, cwd = project.projectDir): Promise<KilnRun> {
  return runKiln(args, { cwd, env: { ...env, ...extraEnv }, timeoutMs: 60_000 });
}
const events = (stderr: string) =>
  stderr
    .trim()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as BuildEvent);
/** Ground truth: the target registry asked directly. */
const targetDigest = async (uri: string) => (await new RegistryClient({ useDockerConfig: false }).headManifest(uri))?.digest;

beforeAll(async () => {
  buildCoreCli();
  [staging, target] = await Promise.all([startRegistry({ auth: "basic" }), startRegistry()]);
  const dockerConfig = join(scratch, "docker");
  mkdirSync(dockerConfig, { recursive: true });
  const { username, password } = staging.credentials!;
  writeFileSync(
    join(dockerConfig, "config.json"),
    JSON.stringify({ auths: { [staging.host]: { auth: Buffer.from(`${username}:${password}`).toString("base64") } } }),
  );
  env = { DOCKER_CONFIG: dockerConfig, KILN_LOCK_DIR: join(scratch, "locks"), TEST_REGISTRY: `${target.host}/prod`, RUN_ID: `${process.pid}-${Date.now()}` };
  project = linkedCliProject();
  writeFileSync(
    join(project.projectDir, "images.ts"),
    `
import { Image } from "@kiln/core";
const registry: string = process.env.TEST_REGISTRY!;
export const api = Image.fromBase("kiln-test/busybox:1.35", { registry, name: "cli/api" }).withEnvVars({ RUN: process.env.RUN_ID! });
export const other = api.withEnvVars({ ROLE: "other" }).clone({ name: "cli/other" });
`,
  );
}, 300_000);

afterAll(async () => {
  await Promise.all([staging?.stop(), target?.stop()]);
  project?.cleanup();
  rmSync(scratch, { recursive: true, force: true });
});

/** The URIs the spec's images have (from `kiln plan`, so the tags are the CLI's own). */
async function plannedUris(): Promise<Record<string, string>> {
  const plan = await kiln(["plan", "images.ts", "--json"]);
  expect(plan.code).toBe(0);
  return Object.fromEntries(
    plan.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { export: string; uri: string })
      .map((r) => [r.export, r.uri]),
  );
}

describe("kiln plan / kiln build with promoteFrom", () => {
  it("plan shows action promote with the source for an image the staging registry holds, build for the other; build then promotes it", async () => {
    const uris = await plannedUris();
    const tag = uris.api!.slice(uris.api!.lastIndexOf(":") + 1);
    const pushed = await pushTestImage(staging, "staging/cli/api", tag, "oci");
    const promoteFrom = { KILN_PROMOTE_FROM: `${staging.host}/staging` };

    const plan = await kiln(["plan", "images.ts", "--json"], promoteFrom);
    expect(plan.code).toBe(0);
    const rows = plan.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rows.find((r) => r.export === "api")).toMatchObject({
      uri: uris.api,
      exists: false,
      action: "promote",
      source: `${staging.host}/staging/cli/api:${tag}`,
    });
    expect(rows.find((r) => r.export === "other")).toMatchObject({ exists: false, action: "build" });
    expect(rows.find((r) => r.export === "other")!.source).toBeUndefined();
    // Human form, and the --promote-from flag beating the environment.
    const text = await kiln(["plan", "images.ts#api", "--promote-from", `${staging.host}/staging`]);
    expect(text.stdout).toMatch(new RegExp(`promote\\s+fixture_push \\(from ${staging.host}/staging/cli/api:${tag}\\)`));
    const off = await kiln(["plan", "images.ts#api", "--json", "--promote-from", ""], promoteFrom);
    expect(JSON.parse(off.stdout)).toMatchObject({ action: "build" });

    // kiln build takes the flag too (no KILN_PROMOTE_FROM here).
    const built = await kiln(["build", "images.ts#api", "--json", "--promote-from", `${staging.host}/staging`]);
    expect(built.code).toBe(0);
    expect(built.stdout.trim()).toBe(uris.api);
    const seen = events(built.stderr);
    expect(seen.map((e) => e.type)).toEqual(expect.arrayContaining(["promote.start", "promote.done"]));
    expect(seen.some((e) => e.type === "build.start")).toBe(false); // the fixture builder never ran
    expect(await targetDigest(uris.api!)).toBe(pushed.digest);
  });
});

describe("kiln plan with no builder installed", () => {
  it("asks the registries directly and still shows promote with the source", async () => {
    const bare = join(scratch, "bare");
    mkdirSync(join(bare, "node_modules/@kiln"), { recursive: true });
    writeFileSync(join(bare, "package.json"), JSON.stringify({ name: "bare", private: true, type: "module" }));
    symlinkSync(CORE, join(bare, "node_modules/@kiln/core"));
    writeFileSync(
      join(bare, "images.ts"),
      `
import { Image } from "@kiln/core";
export const tool = Image.fromBase("kiln-test/busybox:1.35", { registry: process.env.TEST_REGISTRY!, name: "bare/tool" }).withEnvVars({ RUN: process.env.RUN_ID! });
`,
    );
    const run = (extra: Record<string, string>) => kiln(["plan", "images.ts", "--json"], extra, bare);
    const before = JSON.parse((await run({})).stdout) as { uri: string; tag: string; checkedBy: string };
    expect(before).toMatchObject({ checkedBy: "registry", action: "build" });
    await pushTestImage(staging, "staging/bare/tool", before.tag, "oci");
    const plan = await run({ KILN_PROMOTE_FROM: `${staging.host}/staging` });
    expect(plan.code).toBe(0);
    expect(JSON.parse(plan.stdout)).toMatchObject({
      uri: before.uri,
      exists: false,
      action: "promote",
      checkedBy: "registry",
      source: `${staging.host}/staging/bare/tool:${before.tag}`,
    });
  });
});

describe("kiln promote", () => {
  it("--help documents it; bad usage exits 2", async () => {
    const help = await kiln(["promote", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("Usage: kiln promote");
    expect(help.stdout).toContain("Examples:");
    expect((await kiln(["--help"])).stdout).toContain("  promote ");
    expect((await kiln(["promote", `${staging.host}/staging/x:1`])).code).toBe(2);
    expect((await kiln(["promote", `${staging.host}/staging/x:1`, "https://nope"])).code).toBe(2);
  });

  it("copies an index across registries (exit 0, URI@digest on stdout, events on stderr); again: already there, exit 0", async () => {
    const pushed = await pushTestImage(staging, "staging/tools/api", "v1", "oci-index-with-attestation");
    const run = await kiln(["promote", `${staging.host}/staging/tools/api:v1`, `${target.host}/prod`, "--platform", "linux/amd64,linux/arm64", "--json"]);
    expect(run.code).toBe(0);
    const result = JSON.parse(run.stdout) as Record<string, unknown>;
    expect(result).toMatchObject({ status: "promoted", target: `${target.host}/prod/api:v1`, digest: pushed.digest, mode: "stream" });
    const types = events(run.stderr).map((e) => e.type);
    expect(types.indexOf("promote.done")).toBeGreaterThan(types.indexOf("promote.start"));
    expect(await targetDigest(`${target.host}/prod/api:v1`)).toBe(pushed.digest);

    const again = await kiln(["promote", `${staging.host}/staging/tools/api:v1`, `${target.host}/prod`]);
    expect(again.code).toBe(0);
    expect(again.stdout.trim()).toBe(`${target.host}/prod/api:v1@${pushed.digest}`);
  });

  it("--name and --tag place it elsewhere; a source without the image (or a platform) exits 1 and tags nothing", async () => {
    const pushed = await pushTestImage(staging, "staging/tools/single", "v2", "docker-v2");
    const run = await kiln(["promote", `${staging.host}/staging/tools/single:v2`, `${target.host}/prod`, "--name", "renamed/single", "--tag", "stable"]);
    expect(run.code).toBe(0);
    expect(run.stdout.trim()).toBe(`${target.host}/prod/renamed/single:stable@${pushed.digest}`);

    const missing = await kiln(["promote", `${staging.host}/staging/tools/nothing:v1`, `${target.host}/prod`]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/does not hold it/);
    const noArm = await kiln(["promote", `${staging.host}/staging/tools/single:v2`, `${target.host}/prod`, "--name", "arm-only", "--platform", "linux/arm64"]);
    expect(noArm.code).toBe(1);
    expect(await targetDigest(`${target.host}/prod/arm-only:v2`)).toBeUndefined();
  });
});
