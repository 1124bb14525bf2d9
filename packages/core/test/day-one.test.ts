/**
 * Issue 15 ("what an npm user and a plugin author hit on day one"), the library side: the checker
 * chain setting, strict mode with checkers that do not speak for a registry, typos in options,
 * checker names in events, step counters and install hints that follow the project's lockfile.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import type { ImageBuild, ImageBuilder, ImageCheckerLike } from "../src/builder.js";
import { runCheckers, toNamedChecker } from "../src/checkers.js";
import { createRenderer, describeEvent } from "../src/cli/render.js";
import { loadConfig } from "../src/config.js";
import { discoverPlugins } from "../src/discovery.js";
import { build, init } from "../src/engine.js";
import { CheckFailedError, ConfigError, UnknownBuilderError, UnknownCheckerError, ValidationError } from "../src/errors.js";
import type { BuildEvent } from "../src/events.js";
import { Image } from "../src/image.js";
import { addDevCommand } from "../src/packageManager.js";
import { selectBuilder } from "../src/selection.js";

const scratch = mkdtempSync(join(tmpdir(), "kiln-day-one-"));
process.env.KILN_LOCK_DIR = join(scratch, "locks");
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/**
 * A project that is its own plugin (the `kiln` field of its package.json): three checkers, each
 * recording who asked into globalThis.__dayOneAsked and answering absent.
 */
function checkerProject(config?: unknown, kilnField: Record<string, unknown> = {}): string {
  const dir = mkdtempSync(join(scratch, "project-"));
  writeFileSync(
    join(dir, "package.json"),
    JSON.stringify({
      name: "day-one-app",
      private: true,
      type: "module",
      kiln: { apiVersion: 1, imageCheckers: { first: "./checkers.js#First", second: "./checkers.js#Second", third: "./checkers.js#third" }, ...kilnField },
    }),
  );
  writeFileSync(
    join(dir, "checkers.js"),
    `
const asked = (globalThis.__dayOneAsked ??= []);
export class First { static async imageExists() { asked.push("first"); return null; } }
export class Second { async imageExists() { asked.push("second"); return null; } }
export const third = { async imageExists() { asked.push("third"); return null; } };
`,
  );
  if (config !== undefined) writeFileSync(join(dir, "kiln.config.json"), JSON.stringify(config));
  return dir;
}
const asked = (): string[] => ((globalThis as { __dayOneAsked?: string[] }).__dayOneAsked ??= []);

class RecordingBuilder implements ImageBuilder {
  readonly calls: string[] = [];
  constructor(private readonly checkers: ImageCheckerLike[] = []) {}
  getCheckers() {
    return this.checkers;
  }
  async buildImage(image: Image): Promise<ImageBuild> {
    this.calls.push(image.uri);
    return { uri: image.uri };
  }
}
/** The builder's own checker, recording into the same list. */
const builderOwn: ImageCheckerLike = {
  async imageExists() {
    asked().push("builder-own");
    return null;
  },
};

let counter = 0;
const freshImage = () =>
  Image.fromBase("kiln-test/busybox:1.35", { registry: "localhost:5000", name: "day-one" }).withEnvVars({ RUN: `${process.pid}-${++counter}` });

const savedEnv = { ...process.env };
beforeEach(() => {
  asked().length = 0;
  init({});
});
afterEach(() => {
  for (const key of ["KILN_IMAGE_CHECKERS", "KILN_STRICT"]) {
    if (savedEnv[key] === undefined) delete process.env[key];
    else process.env[key] = savedEnv[key];
  }
  init({});
});

describe("checker chain setting (issue 15 item 1)", () => {
  it("unset: the builder's own checkers, as before", async () => {
    const projectDir = checkerProject();
    const result = await build(freshImage(), { builder: new RecordingBuilder([builderOwn]), projectDir, dryRun: true });
    expect(result.outcome).toBe("would-build");
    expect(asked()).toEqual(["builder-own"]);
  });

  it("precedence: build({ checkers }) › init({ imageCheckers }) › KILN_IMAGE_CHECKERS › config imageCheckers, in the order given, named as registered", async () => {
    const projectDir = checkerProject({ imageCheckers: ["third"] });
    const builder = new RecordingBuilder([builderOwn]);
    const run = async (options: { checkers?: string[] } = {}) => {
      asked().length = 0;
      const events: BuildEvent[] = [];
      await build(freshImage(), { builder, projectDir, dryRun: true, onEvent: (e) => events.push(e), ...options });
      return { asked: [...asked()], checkers: events.filter((e) => e.type === "check.start").map((e) => (e as { checker: string }).checker) };
    };
    // Config file.
    expect(await run()).toEqual({ asked: ["third"], checkers: ["third"] });
    // The environment beats the config.
    process.env.KILN_IMAGE_CHECKERS = "second, first";
    expect(await run()).toEqual({ asked: ["second", "first"], checkers: ["second", "first"] });
    // init beats the environment.
    init({ imageCheckers: ["first"] });
    expect(await run()).toEqual({ asked: ["first"], checkers: ["first"] });
    // The call beats init; the registered name (not the class name "First") is what events show.
    expect(await run({ checkers: ["first", "third", "second"] })).toEqual({ asked: ["first", "third", "second"], checkers: ["first", "third", "second"] });
    expect(builder.calls).toEqual([]);
  });

  it("an unknown name fails like an unknown builder, listing the installed checkers", async () => {
    const projectDir = checkerProject();
    const error = await build(freshImage(), { builder: new RecordingBuilder([builderOwn]), projectDir, checkers: ["frist"] }).catch((e) => e);
    expect(UnknownCheckerError.isInstance(error)).toBe(true);
    expect(error.code).toBe("KILN_UNKNOWN_CHECKER");
    expect(error.message).toContain('"frist"');
    expect(error.message).toContain("available: first, second, third");
    expect(asked()).toEqual([]);
  });

  it("config: a list in kiln.config.json or package.json's kiln field; anything else is a ConfigError", () => {
    expect(loadConfig(checkerProject({ imageCheckers: ["first", "second"] })).imageCheckers).toEqual(["first", "second"]);
    expect(() => loadConfig(checkerProject({ imageCheckers: "first" }))).toThrow(ConfigError);
    // In package.json, a list is this setting and the object next to it stays the plugin manifest's table.
    const dir = mkdtempSync(join(scratch, "pkg-config-"));
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "app", private: true, kiln: { imageCheckers: ["registry"] } }));
    expect(loadConfig(dir).imageCheckers).toEqual(["registry"]);
    const discovery = discoverPlugins(dir);
    expect(discovery.problems).toEqual([]);
    expect(discovery.imageCheckers).toEqual([]);
    expect(() => init({ imageCheckers: "first" as unknown as string[] })).toThrow(ConfigError);
  });
});

describe("strict mode with checkers that do not speak for the registry (issue 15 item 2)", () => {
  /** Like the Docker builder's local checker: answers only for registry-less names, null otherwise. */
  const localOnly = {
    name: "local",
    answersFor: (repository: string) => !repository.includes("/") || !repository.split("/")[0]!.includes(":"),
    async imageExists() {
      return null;
    },
  };
  const unauthorized = {
    name: "registry",
    async imageExists(): Promise<string | null> {
      throw new Error("registry answered 401 Unauthorized to anonymous credentials");
    },
  };

  it("not found and the registry's checker could not tell: CheckFailedError, although another checker said nothing", async () => {
    const checkers = [toNamedChecker(localOnly), toNamedChecker(unauthorized)];
    const events: BuildEvent[] = [];
    const error = await runCheckers(checkers, "localhost:5000/app", "abc", ["linux/amd64"], {
      image: "localhost:5000/app:abc",
      strict: true,
      onEvent: (e) => events.push(e),
    }).catch((e) => e);
    expect(CheckFailedError.isInstance(error)).toBe(true);
    expect(error.message).toContain("registry: registry answered 401");
    // The checker that does not speak for the registry was not asked (and is no "absent").
    expect(events.filter((e) => e.type === "check.start").map((e) => (e as { checker: string }).checker)).toEqual(["registry"]);
    // Without strict: absent, and the build goes ahead as before.
    const lenient = await runCheckers(checkers, "localhost:5000/app", "abc", ["linux/amd64"], { image: "localhost:5000/app:abc" });
    expect(lenient.uri).toBeNull();
  });

  it("a third-party checker without answersFor still counts: its error fails strict mode; found wins over errors", async () => {
    const plain = {
      async imageExists(): Promise<string | null> {
        throw new Error("timeout");
      },
    };
    const absent = {
      async imageExists() {
        return null;
      },
    };
    const present = {
      async imageExists(repository: string, tag: string) {
        return `${repository}:${tag}`;
      },
    };
    const opts = { image: "r.example/app:t", strict: true };
    await expect(runCheckers([toNamedChecker(absent), toNamedChecker(plain)], "r.example/app", "t", [], opts)).rejects.toSatisfy((e: unknown) =>
      CheckFailedError.isInstance(e),
    );
    expect((await runCheckers([toNamedChecker(plain), toNamedChecker(present)], "r.example/app", "t", [], opts)).uri).toBe("r.example/app:t");
    expect((await runCheckers([toNamedChecker(absent)], "r.example/app", "t", [], opts)).uri).toBeNull();
    // No checker speaks for the registry at all: nobody could tell.
    await expect(runCheckers([toNamedChecker(localOnly)], "r.example:5000/app", "t", [], opts)).rejects.toSatisfy((e: unknown) =>
      CheckFailedError.isInstance(e),
    );
  });
});

describe("typos in options are rejected, naming the nearest valid key (issue 15 item 3)", () => {
  const nearest = (fn: () => unknown, key: string, suggestion: string) => {
    let error: unknown;
    try {
      fn();
    } catch (e) {
      error = e;
    }
    expect(ValidationError.isInstance(error)).toBe(true);
    expect((error as Error).message).toContain(`"${key}"`);
    expect((error as Error).message).toContain(`did you mean "${suggestion}"`);
  };
  it("constructors, clone and layer options", () => {
    nearest(() => Image.fromBase("kiln-test/busybox:1.35", { platfrom: ["linux/arm64"] } as never), "platfrom", "platform");
    nearest(() => Image.fromDebianBase({ pythonVerison: [3, 12] } as never), "pythonVerison", "pythonVersion");
    nearest(() => Image.fromNodeBase({ nodeversion: 22 } as never), "nodeversion", "nodeVersion");
    nearest(() => Image.fromBase("kiln-test/busybox:1.35").clone({ regsitry: "ghcr.io/acme" } as never), "regsitry", "registry");
    nearest(() => Image.fromDebianBase().withPipPackages("pandas", { indexURL: "https://pypi.example/simple" } as never), "indexURL", "indexUrl");
    nearest(() => Image.fromDebianBase().withCommands("true", { secret: ["A"] } as never), "secret", "secrets");
    nearest(() => Image.fromDockerfile(join(scratch, "Dockerfile"), { buildargs: {} } as never), "buildargs", "buildArgs");
    // Valid keys still work.
    expect(Image.fromBase("kiln-test/busybox:1.35", { platform: ["linux/arm64"] }).platform).toEqual(["linux/arm64"]);
  });
  it("build() and init() options", async () => {
    const builder = new RecordingBuilder([]);
    const error = await build(freshImage(), { builder, dryrun: true } as never).catch((e) => e);
    expect(ValidationError.isInstance(error)).toBe(true);
    expect(error.message).toContain('did you mean "dryRun"');
    expect(builder.calls).toEqual([]);
    expect(() => init({ imageBuidler: "docker" } as never)).toThrow(/did you mean "imageBuilder"/);
  });
});
writeFileSync(join(scratch, "Dockerfile"), "FROM scratch\n");

describe("smaller things (issue 15 item 13)", () => {
  it("a step name carrying its own counter gets no second one", () => {
    const step = (s: string) => describeEvent({ type: "build.step", image: "x", time: 0, step: s, index: 1, total: 2 });
    expect(step("[stage-0 1/2] RUN true")).toBe("step [stage-0 1/2] RUN true");
    expect(step("RUN fixture")).toBe("step [1/2] RUN fixture");
  });

  it("plain progress names the image once, not on every line", () => {
    let text = "";
    const out = { write: (s: string) => ((text += s), true) } as unknown as NodeJS.WritableStream;
    const renderer = createRenderer("plain", out);
    const uri = "localhost:5000/app:0123456789abcdef0123456789abcdef";
    renderer.onEvent({ type: "check.start", image: uri, time: 0, checker: "docker-registry", platforms: ["linux/amd64"] });
    renderer.onEvent({ type: "check.result", image: uri, time: 0, checker: "docker-registry", result: "absent" });
    renderer.onEvent({ type: "build.step", image: uri, time: 0, step: "RUN true", index: 1, total: 1 });
    expect(text.split(uri).length - 1).toBe(1);
    expect(text).toBe(`${uri}:\n  check docker-registry (linux/amd64)\n  check docker-registry: absent\n  step [1/1] RUN true\n`);
  });

  it("the builder-less hint names the project's package manager (from its lockfile)", async () => {
    const hintFor = async (lockfile?: string) => {
      const dir = mkdtempSync(join(scratch, "pm-"));
      writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "app", private: true }));
      if (lockfile) writeFileSync(join(dir, lockfile), "");
      const error = await selectBuilder(undefined, dir).catch((e) => e);
      expect(UnknownBuilderError.isInstance(error)).toBe(true);
      return error.hint as string;
    };
    const saved = process.env.KILN_IMAGE_BUILDER;
    delete process.env.KILN_IMAGE_BUILDER;
    try {
      expect(await hintFor("package-lock.json")).toContain("`npm install -D @kiln/docker`");
      expect(await hintFor("yarn.lock")).toContain("`yarn add -D @kiln/docker`");
      expect(await hintFor("pnpm-lock.yaml")).toContain("`pnpm add -D @kiln/docker`");
    } finally {
      if (saved !== undefined) process.env.KILN_IMAGE_BUILDER = saved;
    }
    const nested = mkdtempSync(join(scratch, "ws-"));
    writeFileSync(join(nested, "pnpm-lock.yaml"), "");
    mkdirSync(join(nested, "app"));
    expect(addDevCommand(join(nested, "app"))).toBe("pnpm add -D");
  });
});

describe("kiln plan's registry client (issue 15 item 7)", () => {
  it("a manifest read by digest and a found child HEAD are asked once per run; tags, misses and errors every time", async () => {
    const { planRegistryClient } = await import("../src/cli/planClient.js");
    const calls: string[] = [];
    const digest = `sha256:${"a".repeat(64)}`;
    let failNext = false;
    const fake = {
      retries: 3,
      async getManifest(ref: { digest?: string; tag?: string }) {
        calls.push(`get ${ref.digest ?? ref.tag}`);
        if (failNext) {
          failNext = false;
          throw new Error("boom");
        }
        return ref.digest === digest ? { digest, manifest: {}, mediaType: "x" } : null;
      },
      async headManifest(ref: { digest?: string; tag?: string }) {
        calls.push(`head ${ref.digest ?? ref.tag}`);
        return ref.tag === "gone" || ref.digest === `sha256:${"b".repeat(64)}` ? null : { digest };
      },
      whoAmI() {
        return this === fake;
      },
    };
    const client = planRegistryClient(fake as never) as unknown as typeof fake;
    const byDigest = { registry: "r.example", repository: "app", digest };
    const missing = { registry: "r.example", repository: "app", digest: `sha256:${"b".repeat(64)}` };
    await client.getManifest(byDigest);
    await client.getManifest(byDigest);
    await client.headManifest(byDigest);
    await client.headManifest(byDigest);
    await client.headManifest({ registry: "r.example", repository: "app", tag: "t1" } as never);
    await client.headManifest({ registry: "r.example", repository: "app", tag: "t1" } as never);
    await client.headManifest(missing);
    await client.headManifest(missing);
    expect(calls).toEqual([`get ${digest}`, `head ${digest}`, "head t1", "head t1", `head ${missing.digest}`, `head ${missing.digest}`]);
    // A failure is not remembered; other members reach the real client.
    calls.length = 0;
    failNext = true;
    const other = { registry: "r.example", repository: "other", digest };
    await expect(client.getManifest(other)).rejects.toThrow("boom");
    expect(await client.getManifest(other)).toMatchObject({ digest });
    expect(calls).toEqual([`get ${digest}`, `get ${digest}`]);
    expect(client.retries).toBe(3);
    expect(client.whoAmI()).toBe(true);
  });
});
