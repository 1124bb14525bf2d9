// The stage plan and keys (no daemon): cuts, what each stage copies, and which keys change when.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileDigestCache, Image, planDockerfile, renderDockerfile } from "@kiln/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { planStages, stageDockerfile } from "../src/stages.js";

let dir: string;
const p = (...parts: string[]) => join(dir, ...parts);
const cache = () => new FileDigestCache(undefined);

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "kiln-stages-"));
  mkdirSync(p("data"));
  writeFileSync(p("data", "big.bin"), "data\n");
  mkdirSync(p("src"));
  writeFileSync(p("src", "main.py"), "print(1)\n");
  writeFileSync(p("requirements.txt"), "requests\n");
  mkdirSync(p("web"));
  writeFileSync(p("web", "package.json"), "{}\n");
  writeFileSync(p("web", "package-lock.json"), "{}\n");
  writeFileSync(p("web", "index.js"), "1\n");
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const python = () =>
  Image.fromDebianBase({ name: "app" })
    .withAptPackages("git")
    .withUser("app")
    .withRequirements(p("requirements.txt"))
    .withSourceFolder(p("data"), "/data")
    .withSourceFolder(p("src"), "/app")
    .withLabels({ a: "b" });

describe("planDockerfile", () => {
  it("joins to exactly renderDockerfile's text, and says which context files each step copies", () => {
    for (const buildkit of [true, false]) {
      const plan = planDockerfile(python(), { buildkit });
      expect(`${[...plan.preamble, ...plan.steps.flatMap((s) => s.lines)].join("\n")}\n`).toBe(renderDockerfile(python(), { buildkit }));
    }
    const steps = planDockerfile(python()).steps;
    const copying = steps.filter((s) => s.consumes.length > 0);
    expect(copying.map((s) => s.consumes)).toEqual([[{ layerIndex: 2, names: ["requirements.txt"] }], [{ layerIndex: 3 }], [{ layerIndex: 4 }]]);
    // The declared user travels with the steps (COPY chowns to it).
    expect(copying.every((s) => s.user === "app" && s.lines[0]!.startsWith("COPY --chown=app "))).toBe(true);
  });
});

describe("planStages", () => {
  it("cuts before every copying step; a source edit changes only the last key", () => {
    const before = planStages(python().spec, { buildkit: true, platform: "linux/amd64", cache: cache() })!;
    expect(before.stages.map((s) => s.steps.length)).toEqual([3, 1, 1, 2]); // uv+apt+USER | requirements | data | src+labels
    expect(before.stages[1]!.consumes).toEqual([{ layerIndex: 2, names: ["requirements.txt"] }]);
    expect(before.stages.every((s) => /^kiln-stage\/app:[0-9a-f]{32}$/.test(s.ref))).toBe(true);
    expect(stageDockerfile(before.stages[1]!.ref, before.stages[2]!)).toBe(`FROM ${before.stages[1]!.ref}\nCOPY --chown=app ["kiln-layers/3/","/data"]\n`);

    writeFileSync(p("src", "main.py"), "print(2)\n");
    const afterSource = planStages(python().spec, { buildkit: true, platform: "linux/amd64", cache: cache() })!;
    expect(afterSource.stages.map((s, i) => s.key === before.stages[i]!.key)).toEqual([true, true, true, false]);

    writeFileSync(p("data", "big.bin"), "other data\n");
    const afterData = planStages(python().spec, { buildkit: true, platform: "linux/amd64", cache: cache() })!;
    expect(afterData.stages.map((s, i) => s.key === afterSource.stages[i]!.key)).toEqual([true, true, false, false]);

    const arm = planStages(python().spec, { buildkit: true, platform: "linux/arm64", cache: cache() })!;
    expect(arm.stages.some((s, i) => s.key === afterData.stages[i]!.key)).toBe(false);
  });

  it("a node project's install stage depends on package.json and the lockfile only", () => {
    const node = () => Image.fromNodeBase({ name: "web" }).withNodeProject(p("web"));
    const before = planStages(node().spec, { buildkit: true, platform: "linux/amd64", cache: cache() })!;
    expect(before.stages.map((s) => s.consumes)).toEqual([[{ layerIndex: 0, names: ["package.json", "package-lock.json"] }], [{ layerIndex: 0 }]]);
    writeFileSync(p("web", "index.js"), "2\n");
    const after = planStages(node().spec, { buildkit: true, platform: "linux/amd64", cache: cache() })!;
    expect(after.stages.map((s, i) => s.key === before.stages[i]!.key)).toEqual([true, false]);
  });

  it("has no stages for a Dockerfile image", () => {
    writeFileSync(p("Dockerfile"), "FROM scratch\n");
    expect(planStages(Image.fromDockerfile(p("Dockerfile")).withEnvVars({ A: "1" }).spec, { buildkit: true, platform: "linux/amd64" })).toBeUndefined();
  });
});
