// The stage plan and keys (no daemon): cuts, what each stage copies, and which keys change when.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createBuildContext, FileDigestCache, Image, planDockerfile, renderDockerfile } from "@kiln/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { layersOnStage, planDockerfileStage, planStages, stageDockerfile } from "../src/incremental/stages.js";
import { createStageContext } from "../src/incremental/stageContext.js";

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

describe("planDockerfileStage (a Dockerfile image with layers)", () => {
  const amd = "linux/amd64" as const;
  const ctx = () => p("dfctx");
  const layered = (args: Record<string, string> = {}) =>
    Image.fromDockerfile(p("dfctx", "Dockerfile"), { context: ctx(), name: "df", buildArgs: args })
      .withEnvVars({ A: "1" })
      .withSourceFolder(p("src"), "/app")
      .withCommands("true");
  const plan = (image = layered(), platform: "linux/amd64" | "linux/arm64" = amd) => {
    const base = planDockerfileStage(image.spec, { platform, cache: cache() })!;
    const stages = planStages(image.spec, { buildkit: true, platform, cache: cache(), baseRef: base.ref })!;
    return { base, stages };
  };

  beforeAll(() => {
    mkdirSync(p("dfctx"));
    writeFileSync(p("dfctx", "Dockerfile"), "FROM scratch\nCOPY . /ctx\n");
    writeFileSync(p("dfctx", "user.txt"), "one\n");
  });

  it("is stage 0: the image without its layers, keyed apart from Kiln's stages, which build FROM it", () => {
    const { base, stages } = plan();
    expect(base.ref).toBe(`kiln-stage/df:${base.key}`);
    expect(base.key).toMatch(/^[0-9a-f]{32}$/);
    expect(base.spec.layers).toEqual([]);
    expect(base.spec.platform).toEqual([amd]);
    expect(stages.baseRef).toBe(base.ref);
    expect(stages.preamble).toEqual([`FROM ${base.ref}`]);
    expect(stages.stages.map((s) => s.consumes)).toEqual([[], [{ layerIndex: 1 }]]); // ENV | COPY src + RUN
    expect(stageDockerfile(base.ref, stages.stages[0]!)).toBe(`FROM ${base.ref}\nENV A="1"\n`);
    // Kiln's contexts hold Kiln's files only; stage 0's holds the user's context only.
    const kiln = createStageContext(layersOnStage(layered().spec, base.ref), stages.stages[1]!.consumes, "FROM x\n");
    kiln.stream.destroy();
    expect(kiln.files).toEqual(["kiln-layers", "Dockerfile", "kiln-layers/1", "kiln-layers/1/main.py"]);
    const own = createBuildContext(base.spec);
    own.stream.destroy();
    expect(own.files).toEqual(["Dockerfile", "user.txt"]);
    expect(own.dockerfilePath).toBe("Dockerfile");
    // The same one-shot Dockerfile as before: stage planning renders nothing differently.
    expect(renderDockerfile(layered())).toContain("COPY . /ctx\nENV A=");
  });

  it("a Kiln source edit keeps stage 0; a context edit, build arg or platform changes it and every later key", () => {
    const before = plan();
    writeFileSync(p("src", "main.py"), "print(3)\n");
    const afterSource = plan();
    expect(afterSource.base.key).toBe(before.base.key);
    expect(afterSource.stages.stages.map((s, i) => s.key === before.stages.stages[i]!.key)).toEqual([true, false]);

    writeFileSync(p("dfctx", "user.txt"), "two\n");
    const afterContext = plan();
    expect(afterContext.base.key).not.toBe(afterSource.base.key);
    expect(afterContext.stages.stages.some((s, i) => s.key === afterSource.stages.stages[i]!.key)).toBe(false);

    expect(plan(layered({ FLAVOUR: "x" })).base.key).not.toBe(afterContext.base.key);
    expect(plan(layered(), "linux/arm64").base.key).not.toBe(afterContext.base.key);
  });

  it("is undefined for other images", () => {
    expect(planDockerfileStage(Image.fromDockerfile(p("dfctx", "Dockerfile"), { context: ctx() }).spec, { platform: amd })).toBeUndefined();
    expect(planDockerfileStage(python().spec, { platform: amd })).toBeUndefined();
  });
});
