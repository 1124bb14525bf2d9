/**
 * End to end: the real `kiln` binary (dist/cli/main.js, built in beforeAll) with a fixture builder
 * plugin that pushes to a real local registry, and a stale build lock planted in KILN_LOCK_DIR the way
 * a killed Kiln leaves it after its pid was reused (a restarted container's Kiln is pid 1 again).
 */
import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TestRegistry } from "../../test-utils/src/registry.js";
import type { BuildEvent } from "../src/events.js";
import { lockPathFor } from "../src/lock.js";
import type { TempProject } from "./fixtures/plugins/projects.js";
import { runKiln, type KilnRun } from "./support/runKiln.js";
import { startCliFixture, type CliFixture } from "./support/cliProject.js";

/** Runs kiln; killed (code null) when it has not finished within `deadlineMs`. */
function kiln(args: string[], env: Record<string, string>, deadlineMs: number): Promise<KilnRun> {
  return runKiln(args, { cwd: project.projectDir, env: { KILN_LOCK_DIR: lockDir, TEST_REGISTRY: registry.host, ...env }, timeoutMs: deadlineMs });
}

let registry: TestRegistry;
let project: TempProject;
let lockDir: string;
let fixture: CliFixture | undefined;

beforeAll(async () => {
  fixture = await startCliFixture("kiln-lock-cli-");
  ({ registry, project, lockDir } = fixture);
  writeFileSync(
    join(project.projectDir, "images.ts"),
    `
import { Image } from "@kiln/core";
export default Image.fromBase("kiln-test/busybox:1.35", { registry: process.env.TEST_REGISTRY!, name: "cli/locked" }).withEnvVars({ RUN: process.env.RUN_ID ?? "1" });
`,
  );
}, 300_000);

afterAll(() => fixture?.stop());

describe("kiln build and a stale lock", () => {
  it("a lock naming a reused pid (pid 1, another start time) does not delay the build: it is broken at once, the image built and pushed", async () => {
    const env = { RUN_ID: `reused-pid-${Date.now()}` };
    const dry = await kiln(["build", "images.ts", "--dry-run"], env, 60_000);
    expect(dry.code, dry.stderr).toBe(0);
    const uri = dry.stdout.trim();
    expect(uri).toMatch(new RegExp(`^${registry.host}/cli/locked:[0-9a-f]{32}$`));

    // What a Kiln killed mid-build left behind, its pid since taken by another process (pid 1 runs).
    const stat = readFileSync("/proc/1/stat", "utf8");
    const realStart = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
    const now = Date.now();
    const lockPath = lockPathFor(`${uri}|linux/amd64`, lockDir);
    writeFileSync(
      lockPath,
      JSON.stringify({
        version: 2,
        pid: 1,
        host: hostname(),
        bootId: readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim(),
        pidNamespace: readlinkSync("/proc/self/ns/pid"),
        startTime: `${Number(realStart) + 1000}`,
        nonce: randomUUID(),
        key: `${uri}|linux/amd64`,
        createdAt: now,
        renewedAt: now,
        renewals: 0,
        leaseMs: 30_000,
      }),
      { mode: 0o600 },
    );

    const run = await kiln(["build", "images.ts", "--json"], env, 25_000);
    expect(run.code, `kiln build did not finish within 25 s (waiting on the stale lock?)\n${run.stderr}`).toBe(0);
    expect(run.ms).toBeLessThan(15_000); // far below the 30 s lease the planted lock declares
    expect(run.stdout.trim()).toBe(uri);
    const events = run.stderr
      .trim()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as BuildEvent);
    expect(events.some((e) => e.type === "lock.wait")).toBe(false);
    expect(events.at(-1)).toMatchObject({ type: "done", built: true, uri });
    const slash = uri.indexOf("/");
    const colon = uri.lastIndexOf(":");
    const head = await fetch(`http://${uri.slice(0, slash)}/v2/${uri.slice(slash + 1, colon)}/manifests/${uri.slice(colon + 1)}`, {
      method: "HEAD",
      headers: { accept: "application/vnd.oci.image.manifest.v1+json" },
    });
    expect(head.status).toBe(200);
    expect(readdirSync(lockDir).filter((f) => f.endsWith(".lock") || f.endsWith(".break"))).toEqual([]);
  });
});
