/**
 * "An index is present only if the platforms in it are" (issue 12, item 3), against Debian's real
 * docker-registry: a two-platform index is pushed, then one child manifest is deleted through the
 * registry's DELETE API. The registry keeps serving the index, but `docker pull --platform` of the
 * deleted platform would fail — so Kiln must call that platform absent (and rebuild it), keep
 * ignoring attestation entries, and call a child it cannot ask about "could not tell", never present.
 * Library (`checkImage`) and the real CLI (`kiln check`, `kiln plan`).
 */
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type KilnError, RegistryError, RegistryTimeoutError } from "../src/errors.js";
import { checkImage } from "../src/registry/check.js";
import { RegistryClient } from "../src/registry/client.js";
import { startFaultProxy, type FaultProxy } from "../../test-utils/src/faultProxy.js";
import { deleteTestManifest, pushTestImage, startRegistry, type PushedTestImage, type TestRegistry } from "../../test-utils/src/registry.js";

const CORE = resolve(import.meta.dirname, "..");
const BOTH = ["linux/amd64", "linux/arm64"];

let registry: TestRegistry;
let proxy: FaultProxy;
let workDir: string;
const client = () => new RegistryClient({ useDockerConfig: false, retry: { retries: 1, baseDelayMs: 10 } });

/** Pushes a two-platform image in `shape` under `repository:tag`, then deletes its arm64 child manifest. */
async function indexWithoutArm64(repository: string, tag: string, shape: "oci-index-with-attestation" | "docker-manifest-list" = "oci-index-with-attestation") {
  const pushed = await pushTestImage(registry, repository, tag, shape);
  const arm64 = pushed.children!.find((c) => c.platform === "linux/arm64")!;
  await deleteTestManifest(registry, repository, arm64.digest);
  return { pushed, arm64 };
}

async function status(path: string, method: "GET" | "HEAD" = "HEAD"): Promise<number> {
  const res = await fetch(`${registry.url}/v2/${path}`, {
    method,
    headers: {
      accept: "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json",
    },
  });
  await res.arrayBuffer();
  return res.status;
}

beforeAll(async () => {
  registry = await startRegistry();
  proxy = await startFaultProxy(registry.url);
  workDir = mkdtempSync(join(tmpdir(), "kiln-index-children-"));
});
afterAll(async () => {
  await proxy?.stop();
  await registry?.stop();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

describe("checkImage: each requested platform's child manifest must be held", () => {
  it("an OCI index whose arm64 child was deleted: served by the registry, yet absent for arm64 and present for amd64", async () => {
    const { pushed, arm64 } = await indexWithoutArm64("kiln/gone-oci", "v1");
    // The situation of the bug: the index is still served, its arm64 manifest is not.
    expect(await status("kiln/gone-oci/manifests/v1", "GET")).toBe(200);
    expect(await status(`kiln/gone-oci/manifests/${arm64.digest}`)).toBe(404);

    const both = await checkImage(`${registry.host}/kiln/gone-oci:v1`, { platforms: BOTH, client: client() });
    expect(both).toMatchObject({
      present: false,
      exists: true,
      digest: pushed.digest,
      platforms: ["linux/amd64"],
      missing: ["linux/arm64"],
      brokenPlatforms: ["linux/arm64"],
    });
    expect(await checkImage(`${registry.host}/kiln/gone-oci:v1`, { platforms: ["linux/arm64"], client: client() })).toMatchObject({
      present: false,
      missing: ["linux/arm64"],
    });
    expect(await checkImage(`${registry.host}/kiln/gone-oci:v1`, { platforms: ["linux/amd64"], client: client() })).toMatchObject({
      present: true,
      missing: [],
      brokenPlatforms: [],
    });
  });

  it("a Docker manifest list whose arm64 child was deleted: the same", async () => {
    await indexWithoutArm64("kiln/gone-list", "v1", "docker-manifest-list");
    const both = await checkImage(`${registry.host}/kiln/gone-list:v1`, { platforms: BOTH, client: client() });
    expect(both).toMatchObject({ present: false, exists: true, missing: ["linux/arm64"], brokenPlatforms: ["linux/arm64"] });
  });

  it("a complete index stays present, and only the requested platforms' children are asked for (attestation entries never)", async () => {
    const pushed = await pushTestImage(registry, "kiln/whole", "v1", "oci-index-with-attestation");
    const c = new RegistryClient({ useDockerConfig: false });
    proxy.requests.length = 0;
    expect(await checkImage(`${proxy.host}/kiln/whole:v1`, { platforms: ["linux/arm64"], client: c })).toMatchObject({ present: true, brokenPlatforms: [] });
    const asked = proxy.requests.filter((r) => r.method === "HEAD" && r.path.includes("/manifests/sha256:")).map((r) => r.path.split("/manifests/")[1]);
    expect(asked).toEqual([pushed.children!.find((c) => c.platform === "linux/arm64")!.digest]);
  });

  it("a deleted attestation manifest changes nothing: attestation entries (unknown/unknown) are not platforms", async () => {
    const pushed = await pushTestImage(registry, "kiln/no-attest", "v1", "oci-index-with-attestation");
    for (const child of pushed.children!) await deleteTestManifest(registry, "kiln/no-attest", child.attestation!);
    expect(await checkImage(`${registry.host}/kiln/no-attest:v1`, { platforms: BOTH, client: client() })).toMatchObject({
      present: true,
      platforms: ["linux/amd64", "linux/arm64"],
      brokenPlatforms: [],
    });
  });

  describe("a child the registry cannot answer for is 'could not tell', never present", () => {
    let whole: PushedTestImage;
    let childPath: string;
    beforeAll(async () => {
      whole = await pushTestImage(registry, "kiln/flaky-child", "v1", "oci-index-with-attestation");
      childPath = `/manifests/${whole.children!.find((c) => c.platform === "linux/arm64")!.digest}`;
    });
    const onChild = ({ method, path }: { method: string; path: string }) => method === "HEAD" && path.endsWith(childPath);

    it("503 on every HEAD of the arm64 child: RegistryError (after its retries), not an answer", async () => {
      proxy.setPlan({ faults: [], match: onChild, then: { kind: "status", status: 503 } });
      const c = new RegistryClient({ useDockerConfig: false, retry: { retries: 2, baseDelayMs: 10 } });
      const error = await checkImage(`${proxy.host}/kiln/flaky-child:v1`, { platforms: BOTH, client: c }).catch((e: unknown) => e);
      proxy.setPlan([]);
      expect(RegistryError.isInstance(error), String(error)).toBe(true);
      expect((error as KilnError).hint).toBeTruthy();
      expect(proxy.requests.filter(onChild)).toHaveLength(3);
      // Once the child answers again, the check is present.
      expect(await checkImage(`${proxy.host}/kiln/flaky-child:v1`, { platforms: BOTH, client: c })).toMatchObject({ present: true, digest: whole.digest });
    });

    it("a child HEAD that never answers: RegistryTimeoutError at the deadline, not an answer", async () => {
      proxy.setPlan({ faults: [], match: onChild, then: { kind: "hang" } });
      const c = new RegistryClient({ useDockerConfig: false, retry: { retries: 2, baseDelayMs: 10 }, timeouts: { idleMs: 10_000, totalMs: 800 } });
      const started = Date.now();
      const error = await checkImage(`${proxy.host}/kiln/flaky-child:v1`, { platforms: BOTH, client: c }).catch((e: unknown) => e);
      proxy.setPlan([]);
      expect(RegistryTimeoutError.isInstance(error), String(error)).toBe(true);
      expect(Date.now() - started).toBeLessThan(5_000);
    });
  });
});

// ---- the real CLI ----------------------------------------------------------------------------------

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function kiln(args: string[], cwd = workDir, timeoutMs = 30_000): Promise<Run> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [join(CORE, "dist/cli/main.js"), ...args], {
      cwd,
      env: { ...process.env, DOCKER_CONFIG: join(workDir, "docker-config"), KILN_LOCK_DIR: join(workDir, "locks") },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c) => (stdout += c));
    child.stderr.on("data", (c) => (stderr += c));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

describe("the CLI on an index whose arm64 child was deleted", () => {
  it("kiln check: exit 1 (absent) for linux/amd64,linux/arm64 and says why; exit 0 for linux/amd64", async () => {
    await indexWithoutArm64("cli/gone", "v1");
    const ref = `${registry.host}/cli/gone:v1`;
    const both = await kiln(["check", ref, "--platform", "linux/amd64,linux/arm64"]);
    expect(both.code, both.stderr).toBe(1);
    expect(both.stdout).toContain(
      `absent ${ref}: missing platform(s) linux/arm64 (has linux/amd64); its index lists linux/arm64 but the registry no longer holds that manifest`,
    );
    const json = await kiln(["check", ref, "--platform", "linux/amd64,linux/arm64", "--json"]);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ status: "absent", exists: true, missing: ["linux/arm64"], brokenPlatforms: ["linux/arm64"] });
    const amd64 = await kiln(["check", ref, "--platform", "linux/amd64"]);
    expect(amd64.code, amd64.stderr).toBe(0);
  });

  it("kiln plan (no builder installed): exists false, action build — not skip", async () => {
    await indexWithoutArm64("cli/planned", "v1");
    const project = join(workDir, "plan-project");
    mkdirSync(join(project, "node_modules/@kiln"), { recursive: true });
    symlinkSync(CORE, join(project, "node_modules/@kiln/core"));
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "plan-project", private: true, type: "module", dependencies: { "@kiln/core": "*" } }));
    writeFileSync(
      join(project, "images.mjs"),
      `import { Image } from "@kiln/core";\n` +
        `export const app = Image.fromBase("kiln-test/busybox:1.35").withEnvVars({ APP: "1" })` +
        `.clone({ registry: ${JSON.stringify(registry.host)}, name: "cli/planned", tag: "v1", platform: ["linux/amd64", "linux/arm64"] });\n`,
    );
    const run = await kiln(["plan", "images.mjs", "--json"], project);
    expect(run.code, run.stderr).toBe(0);
    const [row] = run.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(row).toMatchObject({ uri: `${registry.host}/cli/planned:v1`, exists: false, action: "build", missing: ["linux/arm64"], checkedBy: "registry" });
  });
});
