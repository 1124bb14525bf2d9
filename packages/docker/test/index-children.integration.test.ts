/**
 * "An index is present only if the platforms in it are" (issue 12, item 3) end to end: the real
 * `kiln` CLI with the Docker builder (the machine's dockerd) and Debian's docker-registry. A
 * two-platform image is built and pushed (per-platform images + an OCI index); then its arm64
 * manifest is deleted through the registry's DELETE API — the registry still serves the index,
 * while `docker pull --platform linux/arm64` would fail. `kiln check` must say absent (exit 1),
 * `kiln plan` must plan a build, and `kiln build` must build (the arm64 image again), not report
 * "found". Also the builder's RegistryImageChecker through the library.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RegistryClient } from "@kiln/core";
import { DockerCleanup, deleteTestManifest, startRegistry, uniqueName, type TestRegistry } from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RegistryImageChecker } from "../src/checkers.js";
import { platformTag } from "../src/push/multiPlatform.js";
import { linkedKilnProject, runKiln, type CliRun } from "./reliability/kilnProject.js";

const BOTH = ["linux/amd64", "linux/arm64"] as const;
const cleanup = new DockerCleanup();
let registry: TestRegistry;
let project: string;
let work: string;

beforeAll(async () => {
  registry = await startRegistry();
  project = linkedKilnProject("kiln-index-children-", "index-children-app");
  work = mkdtempSync(join(tmpdir(), "kiln-index-children-work-"));
  writeFileSync(join(project, "hello.txt"), "two platforms\n");
}, 60_000);
afterAll(async () => {
  await cleanup.run();
  await registry?.stop();
  if (project) rmSync(project, { recursive: true, force: true });
  if (work) rmSync(work, { recursive: true, force: true });
});

function kiln(args: string[]): Promise<CliRun> {
  return runKiln(project, args, {
    env: { ...process.env, TEST_REGISTRY: registry.host, DOCKER_CONFIG: join(work, "docker-config"), KILN_LOCK_DIR: join(work, "locks") },
    timeoutMs: 240_000,
  });
}

const events = (run: CliRun) =>
  run.stderr
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map(
      (line) =>
        JSON.parse(line) as { type: string; checker?: string; result?: string; present?: string[]; missing?: string[]; platform?: string; dryRun?: boolean },
    );

/** `repository` and the digest of each platform's manifest in the index the registry serves for `uri`. */
async function indexChildren(uri: string): Promise<Record<string, string>> {
  const index = await new RegistryClient({ useDockerConfig: false }).getManifest(uri);
  const manifests = (index!.manifest as { manifests: Array<{ digest: string; platform: { os: string; architecture: string } }> }).manifests;
  return Object.fromEntries(manifests.map((m) => [`${m.platform.os}/${m.platform.architecture}`, m.digest]));
}

describe("an index whose arm64 manifest was deleted from the registry", () => {
  it("kiln check → exit 1; kiln plan → build; kiln build → builds arm64 again (not 'found'); afterwards present", async () => {
    const name = uniqueName("kiln-children");
    writeFileSync(
      join(project, "images.mjs"),
      `import { Image } from "@kiln/core";\n` +
        `export default Image.fromBase("scratch", { registry: process.env.TEST_REGISTRY, name: ${JSON.stringify(name)}, platform: ["linux/amd64", "linux/arm64"] })` +
        `.withSourceFile(new URL("./hello.txt", import.meta.url).pathname, "/hello.txt");\n`,
    );

    const first = await kiln(["build", "images.mjs", "--json"]);
    expect(first.code, first.stderr.slice(-2000)).toBe(0);
    const uri = first.stdout.trim();
    expect(uri.startsWith(`${registry.host}/${name}:`)).toBe(true);
    const tag = uri.slice(uri.lastIndexOf(":") + 1);
    cleanup.image(uri);
    for (const platform of BOTH) cleanup.image(`${registry.host}/${name}:${platformTag(tag, platform)}`);

    const before = await indexChildren(uri);
    expect(Object.keys(before)).toEqual([...BOTH]);
    await deleteTestManifest(registry, name, before["linux/arm64"]!);
    // The bug's situation: the index is still served; its arm64 manifest is not.
    expect(await indexChildren(uri)).toEqual(before);
    expect(await new RegistryClient({ useDockerConfig: false }).headManifest(`${registry.host}/${name}@${before["linux/arm64"]}`)).toBeNull();

    const check = await kiln(["check", uri, "--platform", "linux/amd64,linux/arm64"]);
    expect(check.code, check.stderr).toBe(1);
    expect(check.stdout).toContain("missing platform(s) linux/arm64");

    const plan = await kiln(["plan", "images.mjs", "--json"]);
    expect(plan.code, plan.stderr).toBe(0);
    expect(JSON.parse(plan.stdout.trim())).toMatchObject({ uri, exists: false, action: "build" });

    const again = await kiln(["build", "images.mjs", "--json"]);
    expect(again.code, again.stderr.slice(-2000)).toBe(0);
    expect(again.stdout.trim()).toBe(uri);
    const seen = events(again);
    expect(seen.find((e) => e.type === "check.result" && e.checker === "docker-registry")).toMatchObject({ result: "absent" });
    expect(seen.some((e) => e.type === "build.start" && !e.dryRun)).toBe(true);
    // amd64 is reused from its per-platform tag; arm64 is built and pushed again.
    expect(seen.find((e) => e.type === "build.platforms-present")).toMatchObject({ present: ["linux/amd64"], missing: ["linux/arm64"] });
    expect(seen.filter((e) => e.type === "push.done" && e.platform).map((e) => e.platform)).toEqual(["linux/arm64"]);

    // The registry now holds every child of the index it serves.
    const after = await indexChildren(uri);
    const client = new RegistryClient({ useDockerConfig: false });
    for (const platform of BOTH) expect(await client.headManifest(`${registry.host}/${name}@${after[platform]}`), platform).not.toBeNull();
    const present = await kiln(["check", uri, "--platform", "linux/amd64,linux/arm64"]);
    expect(present.code, present.stderr).toBe(0);
  }, 600_000);
});

describe("the Docker builder's RegistryImageChecker", () => {
  it("absent for a platform whose child manifest is gone, present for the rest", async () => {
    const { pushTestImage } = await import("@kiln/test-utils");
    const pushed = await pushTestImage(registry, "lib/gone", "v1", "oci-index-with-attestation");
    await deleteTestManifest(registry, "lib/gone", pushed.children!.find((c) => c.platform === "linux/arm64")!.digest);
    const checker = new RegistryImageChecker({ client: new RegistryClient({ useDockerConfig: false }) });
    expect(await checker.imageExists(`${registry.host}/lib/gone`, "v1", [...BOTH])).toBeNull();
    expect(await checker.imageExists(`${registry.host}/lib/gone`, "v1", ["linux/amd64"])).toBe(`${registry.host}/lib/gone:v1`);
  });
});
