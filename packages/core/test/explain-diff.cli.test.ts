/**
 * The real `kiln` binary: `kiln explain --diff` / `--against` and the build reason line of `kiln build`
 * (explain records), and `kiln explain` with a pinned base (pinBase), against a real local registry and
 * a temporary project that installs the fixture builder plugin (it pushes a tiny image per build).
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pushTestImage, type TestRegistry } from "../../test-utils/src/registry.js";
import type { BuildEvent } from "../src/events.js";
import type { TempProject } from "./fixtures/plugins/projects.js";
import { runKiln, type KilnRun } from "./support/runKiln.js";
import { startCliFixture, type CliFixture } from "./support/cliProject.js";

let registry: TestRegistry;
let project: TempProject;
let lockDir: string;
let fixture: CliFixture | undefined;

function kiln(args: string[], env: Record<string, string> = {}): Promise<KilnRun> {
  return runKiln(args, {
    cwd: project.projectDir,
    env: { KILN_LOCK_DIR: lockDir, TEST_REGISTRY: registry.host, KILN_EXPLAIN_RECORDS: "1", ...env },
    timeoutMs: 90_000,
  });
}

const src = (...parts: string[]) => join(project.projectDir, "src", ...parts);

beforeAll(async () => {
  fixture = await startCliFixture("kiln-why-locks-");
  ({ registry, project, lockDir } = fixture);
  mkdirSync(src(), { recursive: true });
  writeFileSync(src("app.py"), "print('app')\n");
  writeFileSync(src("util.py"), "X = 1\n");
  writeFileSync(
    join(project.projectDir, "images.mjs"),
    `
import { Image } from "@kiln/core";
const registry = process.env.TEST_REGISTRY;
export const app = Image.fromBase("kiln-test/busybox:1.35", { registry, name: "why/cli" }).withSourceFolder("./src", "/app");
export const pinned = Image.fromBase(registry + "/why/base:1", { registry, name: "why/pinned", pinBase: true }).withEnvVars({ A: "1" });
export const unpinned = Image.fromBase(registry + "/why/base:1", { registry, name: "why/unpinned" }).withEnvVars({ A: "1" });
`,
  );
}, 300_000);

afterAll(() => fixture?.stop());

describe("kiln explain --diff and the build reason", () => {
  it("no record yet, then a build records it; a changed file is named by explain --diff and by kiln build", async () => {
    const none = await kiln(["explain", "images.mjs#app", "--diff"]);
    expect(none.code).toBe(0);
    expect(none.stdout).toContain("no recorded tag of why/cli yet");

    const first = await kiln(["build", "images.mjs#app"]);
    expect(first.code).toBe(0);
    expect(first.stderr).not.toContain("why:");
    const firstUri = first.stdout.trim();
    const firstTag = firstUri.split(":").pop()!;
    expect(readdirSync(join(project.projectDir, ".kiln/explain/why%2Fcli"))).toEqual([`${firstTag}.json`]);

    const same = await kiln(["explain", "images.mjs#app", "--diff"]);
    expect(same.stdout).toContain(`tag ${firstTag} is the last recorded tag of why/cli`);

    writeFileSync(src("util.py"), "X = 2\n");
    const explained = await kiln(["explain", "images.mjs#app", "--diff"]);
    expect(explained.code).toBe(0);
    expect(explained.stdout).toContain(`last recorded ${firstTag}`);
    expect(explained.stdout).toContain("~ file layers[0] util.py");
    expect(explained.stdout).not.toContain("app.py");
    const asJson = JSON.parse((await kiln(["explain", "images.mjs#app", "--diff", "--json"])).stdout);
    expect(asJson.previous.tag).toBe(firstTag);
    expect(asJson.diff.files.changed).toEqual(["layers[0] util.py"]);

    const second = await kiln(["build", "images.mjs#app"]);
    expect(second.code).toBe(0);
    expect(second.stderr).toContain(`why: since ${firstTag}: file changed: layers[0] util.py`);

    // The record pushed next to the first image: the diff against it needs no .kiln.
    writeFileSync(src("app.py"), "print('app 2')\n");
    rmSync(join(project.projectDir, ".kiln"), { recursive: true, force: true });
    const against = await kiln(["explain", "images.mjs#app", "--against", firstUri]);
    expect(against.code).toBe(0);
    expect(against.stdout).toContain(`${firstUri} has ${firstTag}`);
    expect(against.stdout).toContain("~ file layers[0] util.py");
    expect(against.stdout).toContain("~ file layers[0] app.py");

    const third = await kiln(["build", "images.mjs#app", "--json"]);
    expect(third.code).toBe(0);
    const events = third.stderr
      .trim()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as BuildEvent);
    expect(events.some((e) => e.type === "build.reason")).toBe(false); // .kiln was removed: no earlier tag known
    writeFileSync(src("app.py"), "print('app 3')\n");
    const fourth = await kiln(["build", "images.mjs#app", "--json"]);
    const reason = fourth.stderr
      .trim()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as BuildEvent)
      .find((e) => e.type === "build.reason");
    expect(reason).toMatchObject({ type: "build.reason", reason: expect.stringContaining("file changed: layers[0] app.py") });
  });
});

describe("kiln explain with pinBase", () => {
  it("shows the base's digest; --pin-base pins an image that did not opt in; a moved base changes the tag", async () => {
    const pushed = await pushTestImage(registry, "why/base", "1", "oci");
    const pinned = await kiln(["explain", "images.mjs#pinned"]);
    expect(pinned.code).toBe(0);
    expect(pinned.stdout).toContain(`digest="${pushed.digest}"`);
    const unpinned = await kiln(["explain", "images.mjs#unpinned"]);
    expect(unpinned.stdout).not.toContain("digest=");
    const forced = await kiln(["explain", "images.mjs#unpinned", "--pin-base"]);
    expect(forced.stdout).toContain(`digest="${pushed.digest}"`);
    const viaEnv = await kiln(["explain", "images.mjs#unpinned"], { KILN_PIN_BASE: "1" });
    expect(viaEnv.stdout).toContain(`digest="${pushed.digest}"`);
    const dockerfile = await kiln(["explain", "images.mjs#pinned", "--json"]);
    const tagBefore = JSON.parse(dockerfile.stdout).tag as string;

    const moved = await pushTestImage(registry, "why/base", "1", "oci");
    const after = JSON.parse((await kiln(["explain", "images.mjs#pinned", "--json"])).stdout);
    expect(after.tag).not.toBe(tagBefore);
    expect(JSON.stringify(after.explanation)).toContain(moved.digest);

    // kiln build --pin-base pushes the tag explain --pin-base shows (and plan/dockerfile agree).
    const explainedTag = JSON.parse((await kiln(["explain", "images.mjs#unpinned", "--pin-base", "--json"])).stdout).tag as string;
    const built = await kiln(["build", "images.mjs#unpinned", "--pin-base"]);
    expect(built.code).toBe(0);
    expect(built.stdout.trim()).toBe(`${registry.host}/why/unpinned:${explainedTag}`);
    const planned = JSON.parse((await kiln(["plan", "images.mjs#pinned", "--json"])).stdout);
    expect(planned.tag).toBe(after.tag);
    const dockerfile2 = await kiln(["dockerfile", "images.mjs#pinned"]);
    expect(dockerfile2.stdout.split("\n")[0]).toBe(`FROM ${registry.host}/why/base:1@${moved.digest}`);

    const offline = await kiln(["explain", "images.mjs#pinned"], { TEST_REGISTRY: "127.0.0.1:9" });
    expect(offline.code).toBe(1);
    expect(offline.stderr).toContain("pinBase: cannot resolve the base image 127.0.0.1:9/why/base:1");
    expect(offline.stderr).toContain("hint:");
  });
});
