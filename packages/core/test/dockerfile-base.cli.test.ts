/**
 * `kiln dockerfile`, `kiln explain` and `kiln plan` show an image built on a Kiln image as `kiln build`
 * builds it (issue 17): the default registry (KILN_IMAGE_REGISTRY, or --registry) applies to the base
 * declared without one, so the printed FROM names the base where the build puts it — compared with the
 * Dockerfile the builder of a real `kiln build` run received (in-process, a registered recording builder).
 */
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { ImageBuild, ImageBuilder } from "../src/builder.js";
import { run as runBuild } from "../src/cli/commands/build.js";
import { run as runDockerfile } from "../src/cli/commands/dockerfile.js";
import { run as runExplain } from "../src/cli/commands/explain.js";
import { run as runPlan } from "../src/cli/commands/plan.js";
import { exitCodeFor, printError, type CommandContext, type CommandModule } from "../src/cli/run.js";
import { renderDockerfile } from "../src/dockerfile.js";
import { init } from "../src/engine.js";
import { Image } from "../src/image.js";
import { registerImageBuilder, unregisterImageBuilder } from "../src/selection.js";

const BUILDER = "dockerfile_base_recorder";
const ENV_KEYS = ["KILN_IMAGE_REGISTRY", "KILN_LOCK_DIR", "KILN_EXPLAIN_RECORDS", "KILN_HASH_CACHE"] as const;
const savedEnv = Object.fromEntries(ENV_KEYS.map((key) => [key, process.env[key]]));

class Collect extends Writable {
  text = "";
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString();
    callback();
  }
}

/** Records the Dockerfile of every image it is asked to build; every image is absent until built. */
class RecordingBuilder implements ImageBuilder {
  built: Array<{ name: string; uri: string; dockerfile: string; digest: string }> = [];
  getCheckers() {
    return [{ imageExists: async () => null }];
  }
  async buildImage(image: Image): Promise<ImageBuild> {
    const digest = `sha256:${createHash("sha256").update(image.uri).digest("hex")}`;
    this.built.push({ name: image.name, uri: image.uri, dockerfile: renderDockerfile(image), digest });
    return { uri: image.uri, digest };
  }
}

let dir: string;
let project: string;
const builder = new RecordingBuilder();

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "kiln-dockerfile-base-"));
  project = join(dir, "project");
  mkdirSync(project);
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "dockerfile-base-test", private: true }));
  process.env.KILN_LOCK_DIR = join(dir, "locks");
  process.env.KILN_EXPLAIN_RECORDS = "0";
  process.env.KILN_HASH_CACHE = "off";
  // The base and the image on it, both declared without a registry (the spec module hands them over as
  // JSON, as an Image from another copy of @kiln/core is).
  const run = `${process.pid}-${Date.now()}`;
  const base = Image.fromBase("kiln-test/busybox:1.35", { name: "graph/base" }).withEnvVars({ LEVEL: "base", RUN: run });
  const dependent = Image.fromBase(base, { name: "graph/dependent" }).withEnvVars({ LEVEL: "dependent" });
  const exported = (image: Image) => `{ [Symbol.for("kiln.image")]: true, toJSON: () => (${JSON.stringify(image.toJSON())}) }`;
  writeFileSync(join(dir, "images.mjs"), `export const base = ${exported(base)};\nexport const dependent = ${exported(dependent)};\n`);
  registerImageBuilder(BUILDER, builder);
  init({ projectDir: project });
});

afterAll(() => {
  unregisterImageBuilder(BUILDER);
  init({});
  rmSync(dir, { recursive: true, force: true });
  for (const key of ENV_KEYS) {
    if (savedEnv[key] === undefined) delete process.env[key];
    else process.env[key] = savedEnv[key];
  }
});

afterEach(() => {
  builder.built = [];
  delete process.env.KILN_IMAGE_REGISTRY;
});

async function kiln(command: CommandModule["run"], args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new Collect();
  const stderr = new Collect();
  const context = { signal: new AbortController().signal, stdout, stderr, interactive: false, json: args.includes("--json") } as unknown as CommandContext;
  let code: number;
  try {
    code = await command(args, context);
  } catch (error) {
    code = exitCodeFor(error, context.signal);
    printError(error, context, code);
  }
  return { code, stdout: stdout.text, stderr: stderr.text };
}

const fromLine = (dockerfile: string) => dockerfile.split("\n").find((line) => line.startsWith("FROM "))!;

/** `kiln dockerfile` of the dependent, then `kiln build` of it: what each says FROM is, and the base the build built. */
async function printedAndBuilt(extra: string[]) {
  const printed = await kiln(runDockerfile, [join(dir, "images.mjs#dependent"), ...extra]);
  expect(printed.code, printed.stderr).toBe(0);
  const build = await kiln(runBuild, [join(dir, "images.mjs#dependent"), "--builder", BUILDER, "--project", project, ...extra]);
  expect(build.code, build.stderr).toBe(0);
  const base = builder.built.find((b) => b.name === "graph/base")!;
  const dependent = builder.built.find((b) => b.name === "graph/dependent")!;
  expect(base).toBeDefined();
  expect(dependent).toBeDefined();
  return { printedFrom: fromLine(printed.stdout), builtFrom: fromLine(dependent.dockerfile), base };
}

describe("kiln dockerfile names a Kiln base where kiln build puts it", () => {
  it("the default registry (KILN_IMAGE_REGISTRY) applies to the base declared without one", async () => {
    process.env.KILN_IMAGE_REGISTRY = "localhost:5999/acme";
    const { printedFrom, builtFrom, base } = await printedAndBuilt([]);
    expect(base.uri.startsWith(`${process.env.KILN_IMAGE_REGISTRY}/`)).toBe(true);
    // The build reads the base by the digest it was just built at; the reference is the printed one.
    expect(printedFrom).toBe(`FROM ${base.uri}`);
    expect(builtFrom).toBe(`${printedFrom}@${base.digest}`);
  });

  it("--registry applies to the base as well", async () => {
    process.env.KILN_IMAGE_REGISTRY = "localhost:5999/acme";
    const { printedFrom, builtFrom, base } = await printedAndBuilt(["--registry", "127.0.0.1:5998/team"]);
    expect(base.uri.startsWith("127.0.0.1:5998/team/")).toBe(true);
    expect(printedFrom).toBe(`FROM ${base.uri}`);
    expect(builtFrom).toBe(`${printedFrom}@${base.digest}`);
  });

  it("kiln explain shows the chain under the default registry too", async () => {
    process.env.KILN_IMAGE_REGISTRY = "localhost:5999/acme";
    const explained = await kiln(runExplain, [join(dir, "images.mjs#dependent"), "--project", project, "--json"]);
    expect(explained.code, explained.stderr).toBe(0);
    const record = JSON.parse(explained.stdout.trim());
    const build = await kiln(runBuild, [join(dir, "images.mjs#dependent"), "--builder", BUILDER, "--project", project]);
    expect(build.code, build.stderr).toBe(0);
    const base = builder.built.find((b) => b.name === "graph/base")!;
    const dependent = builder.built.find((b) => b.name === "graph/dependent")!;
    expect(record.uri).toBe(dependent.uri);
    expect(record.chain).toEqual([{ uri: base.uri, tag: base.uri.slice(base.uri.lastIndexOf(":") + 1) }]);
  });

  it("kiln plan applies --platform down the chain, as kiln build does (the base is not left on its own platforms)", async () => {
    const planned = await kiln(runPlan, [join(dir, "images.mjs#dependent"), "--builder", BUILDER, "--project", project, "--platform", "linux/arm64", "--json"]);
    expect(planned.code, planned.stdout + planned.stderr).toBe(0);
    const row = JSON.parse(planned.stdout.trim());
    expect(row.reason).toBeUndefined();
    expect(row.platforms).toEqual(["linux/arm64"]);
    const build = await kiln(runBuild, [join(dir, "images.mjs#dependent"), "--builder", BUILDER, "--project", project, "--platform", "linux/arm64"]);
    expect(build.code, build.stderr).toBe(0);
    expect(row.uri).toBe(builder.built.find((b) => b.name === "graph/dependent")!.uri);
  });
});
