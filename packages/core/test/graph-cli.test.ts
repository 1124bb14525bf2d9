// The real `kiln` binary (dist/cli/main.js) on image graphs and groups (issue 17): `kiln explain`
// shows the chain, `#group` selects a group's images, a platform mismatch is a usage error naming both
// images, and `kiln build --help` teaches --concurrency (with the real default) and --fail-fast.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_BUILD_CONCURRENCY } from "../src/buildAll.js";
import { Image } from "../src/image.js";
import { CORE_DIR as CORE, runKiln, type KilnRun } from "./support/runKiln.js";
import { buildCoreCli } from "./support/cliProject.js";

const dir = mkdtempSync(join(tmpdir(), "kiln-graph-cli-"));

function kiln(args: string[]): Promise<KilnRun> {
  return runKiln(args, { cwd: dir, env: { CI: "1", KILN_HASH_CACHE: "off" }, timeoutMs: 60_000 });
}

const chainSource = (core: string) => `
import { Image, group } from ${JSON.stringify(core)};
export const bottom = Image.fromBase("busybox:1.35", { registry: "localhost:5000", name: "bottom" }).withEnvVars({ L: "bottom" });
export const middle = Image.fromBase(bottom, { registry: "localhost:5000", name: "middle" }).withEnvVars({ L: "middle" });
export const top = Image.fromBase(middle, { registry: "localhost:5000", name: "top" }).withEnvVars({ L: "top" });
export const other = Image.fromBase("busybox:1.35", { name: "other" }).withEnvVars({ L: "other" });
export const upper = group("upper", [top, middle]);
`;

beforeAll(() => {
  buildCoreCli();
  const core = pathToFileURL(join(CORE, "dist/index.js")).href;
  writeFileSync(join(dir, "spec.mjs"), chainSource(core));
  writeFileSync(
    join(dir, "mismatch.mjs"),
    `import { Image } from ${JSON.stringify(core)};
const base = Image.fromBase("busybox:1.35", { name: "amd-base" }).withEnvVars({ A: "1" });
export const multi = Image.fromBase(base, { name: "multi-arch", platform: ["linux/amd64", "linux/arm64"] }).withEnvVars({ B: "1" });
`,
  );
}, 300_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The same chain, declared here with the sources under test. */
function chain() {
  const bottom = Image.fromBase("busybox:1.35", { registry: "localhost:5000", name: "bottom" }).withEnvVars({ L: "bottom" });
  const middle = Image.fromBase(bottom, { registry: "localhost:5000", name: "middle" }).withEnvVars({ L: "middle" });
  const top = Image.fromBase(middle, { registry: "localhost:5000", name: "top" }).withEnvVars({ L: "top" });
  return { bottom, middle, top };
}

describe("kiln CLI with image graphs", () => {
  it("explain shows the chain (text and --json)", async () => {
    const { bottom, middle, top } = chain();
    const text = await kiln(["explain", "spec.mjs#top"]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain(`chain ${top.uri} <- ${middle.uri} <- ${bottom.uri} <- busybox:1.35\n`);
    const json = await kiln(["explain", "spec.mjs#top", "--json"]);
    expect(json.code, json.stderr).toBe(0);
    const record = JSON.parse(json.stdout.trim().split("\n")[0]!);
    expect(record.uri).toBe(top.uri);
    expect(record.chain).toEqual([
      { uri: middle.uri, tag: middle.tag },
      { uri: bottom.uri, tag: bottom.tag },
    ]);
  }, 60_000);

  it("#group selects the group's images, under their export names", async () => {
    const run = await kiln(["explain", "spec.mjs#upper", "--json"]);
    expect(run.code, run.stderr).toBe(0);
    expect(
      run.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l).export),
    ).toEqual(["top", "middle"]);
  }, 60_000);

  it("a base declared for fewer platforms than its dependent: exit 2, both images named", async () => {
    const run = await kiln(["explain", "mismatch.mjs"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("multi-arch is declared for linux/arm64, which its base image amd-base is not");
  }, 60_000);

  it("kiln build --help teaches #group, --concurrency (with its default) and --fail-fast", async () => {
    const run = await kiln(["build", "--help"]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("<spec>[#export|#group]");
    expect(run.stdout).toContain(`--concurrency <n>       images checked/built at the same time (default ${DEFAULT_BUILD_CONCURRENCY})`);
    expect(run.stdout).toContain("--fail-fast");
  }, 60_000);
});
