// Many images in one `kiln build` run (issue 17), through the real CLI on a linked project, the real
// Docker Engine and a registry on loopback: 20 images, two of which fail — the 18 others are built,
// both failures are reported, the summary says so, exit 1; --fail-fast stops at the first and cancels
// the rest; spec.ts#group and spec.ts#export select.
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DockerCleanup, ensureBusyboxImage, startRegistry, uniqueName, type TestRegistry } from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { linkedKilnProject, runKiln } from "./reliability/kilnProject.js";

let busybox: string;
let registry: TestRegistry;
let project: string;
const cleanup = new DockerCleanup();
const run = uniqueName("many");

beforeAll(async () => {
  busybox = await ensureBusyboxImage();
  registry = await startRegistry({ auth: "none" });
  project = linkedKilnProject("kiln-many-cli-", "many-cli");
  // 18 good images and 2 whose RUN fails; export names sort the failing ones first (started first).
  const lines = [
    `import { Image, group } from "@kiln/core";`,
    `const image = (name) => Image.fromBase(${JSON.stringify(busybox)}, { registry: ${JSON.stringify(registry.host)}, name: ${JSON.stringify(run)} + "-" + name });`,
  ];
  for (let i = 1; i <= 18; i++)
    lines.push(`export const img${String(i).padStart(2, "0")} = image("img${i}").withEnvVars({ IMAGE: "${i}", RUN: ${JSON.stringify(run)} });`);
  lines.push(`export const A_fail1 = image("fail1").withCommands("echo first-broken-step >&2; exit 3");`);
  lines.push(`export const A_fail2 = image("fail2").withCommands("echo second-broken-step >&2; exit 4");`);
  lines.push(`export const pair = group("pair", [img03, img04]);`);
  writeFileSync(join(project, "spec.mjs"), `${lines.join("\n")}\n`);
  for (let i = 1; i <= 18; i++) cleanup.image(`${registry.host}/${run}-img${i}:latest`);
}, 180_000);
afterAll(async () => {
  await cleanup.run();
  await registry?.stop();
  if (project) rmSync(project, { recursive: true, force: true });
});

const kiln = (args: string[]) =>
  runKiln(project, args, { env: { ...process.env, KILN_LOCK_DIR: join(project, "locks"), KILN_HASH_CACHE: "off", CI: "1" }, timeoutMs: 500_000 });

/** The summary table's rows (after the IMAGE ACTION TIME DIGEST header) as [image, action, time, digest]. */
function summaryRows(stderr: string): string[][] {
  const lines = stderr.split("\n");
  const header = lines.findIndex((l) => /^IMAGE\s+ACTION\s+TIME\s+DIGEST$/.test(l));
  expect(header, stderr).toBeGreaterThanOrEqual(0);
  const rows: string[][] = [];
  for (const line of lines.slice(header + 1)) {
    if (/^\d+ images: /.test(line) || line.trim() === "") break;
    rows.push(line.trim().split(/\s+/));
  }
  return rows;
}

describe("kiln build with many images", () => {
  it("#group and #export select; --dry-run lists what would be built", async () => {
    const group = await kiln(["build", "spec.mjs#pair", "--builder", "docker", "--dry-run"]);
    expect(group.code, group.stderr).toBe(0);
    expect(
      group.stdout
        .trim()
        .split("\n")
        .map((uri) => uri.slice(registry.host.length + 1).split(":")[0]),
    ).toEqual([`${run}-img3`, `${run}-img4`]);
    expect(summaryRows(group.stderr).map((r) => [r[0], r[1]])).toEqual([
      ["img03", "would-build"],
      ["img04", "would-build"],
    ]);
    const one = await kiln(["build", "spec.mjs#img07", "--builder", "docker", "--dry-run"]);
    expect(one.code, one.stderr).toBe(0);
    expect(one.stdout.trim().split("\n")).toHaveLength(1);
    expect(one.stdout).toContain(`/${run}-img7:`);
    const unknown = await kiln(["build", "spec.mjs#nope", "--builder", "docker", "--dry-run"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/its groups: pair/);
  }, 120_000);

  it("--fail-fast: the first failure stops the run and cancels the others (exit 1)", async () => {
    const result = await kiln(["build", "spec.mjs", "--builder", "docker", "--fail-fast", "--concurrency", "2"]);
    expect(result.code, result.stderr).toBe(1);
    const rows = summaryRows(result.stderr);
    expect(rows).toHaveLength(20);
    const actions = rows.map((r) => r[1]);
    expect(actions.filter((a) => a === "failed").length).toBeGreaterThanOrEqual(1);
    // Started two at a time, the failing pair first: at least the 16 images never started are cancelled.
    expect(actions.filter((a) => a === "cancelled").length).toBeGreaterThanOrEqual(16);
    expect(actions.filter((a) => a === "built").length).toBeLessThan(18);
  }, 300_000);

  it("20 images, two failing: the 18 others are built, both failures reported, summary lines, exit 1", async () => {
    const result = await kiln(["build", "spec.mjs", "--builder", "docker"]);
    expect(result.code, result.stderr).toBe(1);
    const uris = result.stdout.trim().split("\n");
    expect(uris).toHaveLength(18);
    for (let i = 1; i <= 18; i++) expect(uris.some((u) => u.startsWith(`${registry.host}/${run}-img${i}:`))).toBe(true);
    const errorLines = result.stderr.split("\n").filter((l) => l.startsWith("kiln: "));
    expect(
      errorLines.filter((l) => l.includes(`${run}-fail1:`)),
      result.stderr,
    ).toHaveLength(1);
    expect(
      errorLines.filter((l) => l.includes(`${run}-fail2:`)),
      result.stderr,
    ).toHaveLength(1);
    const rows = summaryRows(result.stderr);
    expect(rows).toHaveLength(20);
    const byName = new Map(rows.map((r) => [r[0], r]));
    expect(byName.get("A_fail1")?.[1]).toBe("failed");
    expect(byName.get("A_fail2")?.[1]).toBe("failed");
    for (let i = 1; i <= 18; i++) {
      const row = byName.get(`img${String(i).padStart(2, "0")}`)!;
      expect(["built", "found"]).toContain(row[1]);
      expect(row[2]).toMatch(/^\d+\.\d+s$/);
      expect(row[3]).toMatch(/^sha256:[0-9a-f]{64}$/);
    }
    expect(result.stderr).toMatch(/20 images: .*2 failed/);

    // --json: the same as NDJSON summary lines; everything found now but the two failures.
    const json = await kiln(["build", "spec.mjs", "--builder", "docker", "--json"]);
    expect(json.code).toBe(1);
    const summary = json.stderr
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l))
      .filter((e) => e.type === "summary");
    expect(summary).toHaveLength(20);
    expect(summary.filter((s) => s.action === "found")).toHaveLength(18);
    expect(
      summary
        .filter((s) => s.action === "failed")
        .map((s) => s.image)
        .sort(),
    ).toEqual(["A_fail1", "A_fail2"]);
    expect(summary.find((s) => s.image === "A_fail1").error.message).toBeTruthy();
  }, 500_000);
});
