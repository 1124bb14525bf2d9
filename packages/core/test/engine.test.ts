import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import type { ImageBuild, ImageBuilder, ImageCheckerLike } from "../src/builder.js";
import { build, buildKey, ImageBuildEngine, init } from "../src/engine.js";
import { CheckFailedError, ConfigError, KilnError, UnknownBuilderError } from "../src/errors.js";
import type { BuildEvent } from "../src/events.js";
import { Image } from "../src/image.js";
import { registerImageBuilder, unregisterImageBuilder } from "../src/selection.js";

const scratch = mkdtempSync(join(tmpdir(), "kiln-engine-"));
const projectDir = join(scratch, "project");
const lockDir = join(scratch, "locks");
writeFileSync(join(scratch, "Dockerfile"), "FROM scratch\nCOPY x /x\n");
writeFileSync(join(scratch, "x"), "x");
process.env.KILN_LOCK_DIR = lockDir;

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let counter = 0;
/** A fresh image per test so builds never share state across tests. */
function freshImage(registry = "localhost:5000"): Image {
  return Image.fromBase("kiln-test/busybox:1.35", { registry, name: "engine-test" }).withEnvVars({ RUN: `${process.pid}-${++counter}` });
}

/** A builder that records its calls and whose image store its checkers read. */
class RecordingBuilder implements ImageBuilder {
  readonly calls: Array<{ uri: string; dryRun?: boolean; force?: boolean }> = [];
  readonly store = new Set<string>();
  delayMs = 0;
  constructor(private readonly checkers: ImageCheckerLike[] = []) {}
  getCheckers() {
    return this.checkers;
  }
  async buildImage(image: Image, options: { dryRun?: boolean; force?: boolean; onEvent?: (e: BuildEvent) => void }): Promise<ImageBuild> {
    this.calls.push({ uri: image.uri, dryRun: options.dryRun, force: options.force });
    options.onEvent?.({ type: "build.step", image: image.uri, step: "RUN true", index: 1, total: 1, time: Date.now() });
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    this.store.add(image.uri);
    return { uri: image.uri, digest: "sha256:" + "a".repeat(64) };
  }
}

const answering = (answer: string | null | Error, seen?: string[]): ImageCheckerLike => ({
  async imageExists(repository: string, tag: string) {
    seen?.push(`${repository}:${tag}`);
    if (answer instanceof Error) throw answer;
    return answer;
  },
});

const saved = { ...process.env };
beforeEach(() => {
  init({ projectDir });
});
afterEach(() => {
  for (const key of ["KILN_IMAGE_BUILDER", "KILN_IMAGE_REGISTRY", "KILN_STRICT"]) {
    if (saved[key] === undefined) delete process.env[key];
    else process.env[key] = saved[key];
  }
  init({});
});

describe("existence check", () => {
  it("runs checkers in order; the first URI wins and later checkers are not asked", async () => {
    const seen: string[] = [];
    const first = answering(null, seen);
    const second = answering("registry.example/found:1", seen);
    const third = answering("never", seen);
    const builder = new RecordingBuilder([first, second, third]);
    const image = freshImage();
    const events: BuildEvent[] = [];
    const result = await build(image, { builder, onEvent: (e) => events.push(e) });
    expect(result).toMatchObject({ uri: "registry.example/found:1", outcome: "found" });
    expect(seen).toEqual([`localhost:5000/engine-test:${image.tag}`, `localhost:5000/engine-test:${image.tag}`]);
    expect(builder.calls).toEqual([]);
    expect(events.filter((e) => e.type === "check.result").map((e) => (e as { result: string }).result)).toEqual(["absent", "present"]);
    expect(events.at(-1)).toMatchObject({ type: "done", built: false, uri: "registry.example/found:1" });
  });

  it("a throwing checker passes to the next; when all throw or return null, the image is built", async () => {
    const builder = new RecordingBuilder([answering(new Error("registry down")), answering(null)]);
    const image = freshImage();
    const events: BuildEvent[] = [];
    const result = await build(image, { builder, onEvent: (e) => events.push(e) });
    expect(result.outcome).toBe("built");
    expect(result.digest).toBe("sha256:" + "a".repeat(64));
    expect(builder.calls).toEqual([{ uri: image.uri, dryRun: false, force: false }]);
    const kinds = events.map((e) => e.type);
    // The check runs again under the build lock (another process may have pushed meanwhile).
    const check = ["check.start", "check.result", "check.start", "check.result"];
    expect(kinds).toEqual([...check, ...check, "build.start", "build.step", "done"]);
    expect(events[1]).toMatchObject({ result: "error", error: { message: "registry down" } });
  });

  it("checkers receive the image's platforms", async () => {
    const asked: unknown[] = [];
    const builder = new RecordingBuilder([
      {
        async imageExists(_r, _t, arch) {
          asked.push(arch);
          return null;
        },
      },
    ]);
    const image = freshImage().clone({ platform: ["linux/amd64", "linux/arm64"] });
    await build(image, { builder });
    expect(asked).toEqual([
      ["linux/amd64", "linux/arm64"],
      ["linux/amd64", "linux/arm64"],
    ]); // again under the lock
  });

  it("a checker class with a static imageExists, a class with an instance method, and an instance all work", async () => {
    class StaticChecker {
      static calls = 0;
      static async imageExists() {
        StaticChecker.calls++;
        return null;
      }
    }
    class InstanceChecker {
      async imageExists(repository: string, tag: string) {
        return `${repository}:${tag}`;
      }
    }
    const builder = new RecordingBuilder([StaticChecker, InstanceChecker as unknown as ImageCheckerLike]);
    const image = freshImage();
    const result = await build(image, { builder });
    expect(StaticChecker.calls).toBe(1);
    expect(result).toMatchObject({ outcome: "found", foundBy: "InstanceChecker", uri: image.uri });
  });

  it("tag latest skips the check and always builds", async () => {
    const seen: string[] = [];
    const builder = new RecordingBuilder([answering("present", seen)]);
    const image = freshImage().clone({ tag: "latest" });
    const events: BuildEvent[] = [];
    const result = await build(image, { builder, onEvent: (e) => events.push(e) });
    expect(result.outcome).toBe("built");
    expect(seen).toEqual([]);
    expect(events[0]).toMatchObject({ type: "check.skipped", reason: "latest" });
  });

  it("force skips the check and builds", async () => {
    const seen: string[] = [];
    const builder = new RecordingBuilder([answering("present", seen)]);
    const result = await build(freshImage(), { builder, force: true });
    expect(result.outcome).toBe("built");
    expect(seen).toEqual([]);
    expect(builder.calls[0]!.force).toBe(true);
  });

  it("strict mode (option or KILN_STRICT=1) turns 'every checker failed' into CheckFailedError, credentials redacted", async () => {
    const leaky = new Error("GET https://bob:hunter2@registry.example/v2/ failed, Authorization: Bearer abc.def.ghi");
    const builder = new RecordingBuilder([answering(leaky), answering(new Error("timeout"))]);
    const events: BuildEvent[] = [];
    const error = await build(freshImage(), { builder, strict: true, onEvent: (e) => events.push(e) }).catch((e) => e);
    expect(CheckFailedError.isInstance(error)).toBe(true);
    expect(builder.calls).toEqual([]);
    const everything = JSON.stringify(events) + error.message;
    expect(everything).not.toContain("hunter2");
    expect(everything).not.toContain("abc.def.ghi");
    expect(everything).toContain("https://***@registry.example");

    process.env.KILN_STRICT = "1";
    await expect(build(freshImage(), { builder })).rejects.toSatisfy((e: unknown) => CheckFailedError.isInstance(e));
    // Strict: one checker that speaks for the registry could not tell, and none found it → fail,
    // even when another one answered null (issue 15 item 2; test/day-one.test.ts has the details).
    const mixed = new RecordingBuilder([answering(new Error("x")), answering(null)]);
    await expect(build(freshImage(), { builder: mixed })).rejects.toSatisfy((e: unknown) => CheckFailedError.isInstance(e));
  });
});

describe("dry run, fromBase and wait", () => {
  it("dryRun never calls the builder, even for a Dockerfile image, and returns the URI", async () => {
    const builder = new RecordingBuilder([answering(null)]);
    const image = Image.fromDockerfile(join(scratch, "Dockerfile"), { registry: "localhost:5000", name: "df" });
    const events: BuildEvent[] = [];
    const result = await ImageBuildEngine.build(image, { builder, dryRun: true, onEvent: (e) => events.push(e) });
    expect(result).toMatchObject({ uri: image.uri, outcome: "would-build" });
    expect(builder.calls).toEqual([]);
    expect(events.at(-1)).toMatchObject({ type: "done", dryRun: true, built: false });
  });

  it("a fromBase image without layers is not built (not even checked)", async () => {
    const builder = new RecordingBuilder([answering(null)]);
    const image = Image.fromBase("kiln-test/busybox:1.35");
    const result = await build(image, { builder });
    expect(result).toMatchObject({ uri: "kiln-test/busybox:1.35", outcome: "not-needed" });
    expect(builder.calls).toEqual([]);
  });

  it("wait: false returns a handle at once; wait() resolves with the build", async () => {
    const builder = new RecordingBuilder([]);
    builder.delayMs = 200;
    const image = freshImage();
    const started = Date.now();
    const handle = await build(image, { builder, wait: false });
    expect(Date.now() - started).toBeLessThan(150);
    expect(handle.uri).toBe(image.uri);
    expect(builder.store.has(image.uri)).toBe(false);
    const finished = await handle.wait();
    expect(finished.outcome).toBe("built");
    expect(builder.store.has(image.uri)).toBe(true);
  });
});

describe("registry and builder selection", () => {
  it("init({ imageRegistry }) applies to images declared without a registry, as clone({ registry })", async () => {
    const builder = new RecordingBuilder([]);
    init({ projectDir, imageRegistry: "registry.internal:5000/team" });
    const bare = Image.fromBase("kiln-test/busybox:1.35", { name: "bare" }).withEnvVars({ N: String(++counter) });
    const result = await build(bare, { builder });
    expect(result.uri).toBe(`registry.internal:5000/team/bare:${bare.tag}`);
    const own = freshImage("own.registry:5000");
    expect((await build(own, { builder })).uri).toBe(own.uri);
  });

  it("KILN_IMAGE_REGISTRY applies when init gave none", async () => {
    process.env.KILN_IMAGE_REGISTRY = "env.registry:5000";
    const bare = Image.fromBase("kiln-test/busybox:1.35", { name: "bare" }).withEnvVars({ N: String(++counter) });
    expect((await build(bare, { builder: new RecordingBuilder([]) })).uri).toBe(`env.registry:5000/bare:${bare.tag}`);
  });

  it("precedence: option > init > KILN_IMAGE_BUILDER > config file > the only installed builder", async () => {
    const project = mkdtempSync(join(scratch, "sel-"));
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "p", version: "1.0.0" }));
    const named = (label: string) => {
      const b = new RecordingBuilder([]);
      (b as unknown as { label: string }).label = label;
      return b;
    };
    const builders = { opt: named("opt"), fromInit: named("init"), fromEnv: named("env"), fromConfig: named("config") };
    registerImageBuilder("sel_init", builders.fromInit);
    registerImageBuilder("sel_env", builders.fromEnv);
    registerImageBuilder("sel_config", builders.fromConfig);
    try {
      writeFileSync(join(project, "kiln.config.json"), JSON.stringify({ imageBuilder: "sel_config" }));
      process.env.KILN_IMAGE_BUILDER = "sel_env";
      init({ projectDir: project, imageBuilder: "sel_init" });
      await build(freshImage(), { builder: builders.opt });
      expect(builders.opt.calls.length).toBe(1);
      await build(freshImage());
      expect(builders.fromInit.calls.length).toBe(1);
      init({ projectDir: project });
      await build(freshImage());
      expect(builders.fromEnv.calls.length).toBe(1);
      delete process.env.KILN_IMAGE_BUILDER;
      await build(freshImage());
      expect(builders.fromConfig.calls.length).toBe(1);
    } finally {
      for (const n of ["sel_init", "sel_env", "sel_config"]) unregisterImageBuilder(n);
    }
    // The only installed builder: the project's own package.json declares exactly one.
    const solo = mkdtempSync(join(scratch, "solo-"));
    writeFileSync(join(solo, "b.mjs"), "export class Solo { async buildImage(image) { return { uri: image.uri, remoteRun: 'solo' }; } }");
    writeFileSync(
      join(solo, "package.json"),
      JSON.stringify({ name: "solo", version: "1.0.0", kiln: { apiVersion: 1, imageBuilders: { solo: "./b.mjs#Solo" } } }),
    );
    init({ projectDir: solo });
    expect((await build(freshImage())).remoteRun).toBe("solo");
  });

  it("an unknown builder name fails with UnknownBuilderError listing the available ones", async () => {
    registerImageBuilder("available_one", new RecordingBuilder([]));
    try {
      const error = await build(freshImage(), { builder: "no_such_builder" }).catch((e) => e);
      expect(UnknownBuilderError.isInstance(error)).toBe(true);
      expect(error.message).toContain('"no_such_builder"');
      expect(error.message).toContain("available_one");
    } finally {
      unregisterImageBuilder("available_one");
    }
  });

  it("a bad config file is a ConfigError naming the file and the key", async () => {
    const project = mkdtempSync(join(scratch, "cfg-"));
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "p", kiln: { imageBuilder: 42 } }));
    init({ projectDir: project });
    const error = await build(freshImage(), { builder: new RecordingBuilder([]) }).catch((e) => e);
    expect(ConfigError.isInstance(error)).toBe(true);
    expect(error.message).toContain(join(project, "package.json"));
    expect(error.message).toContain("kiln.imageBuilder");
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "p" }));
    writeFileSync(join(project, "kiln.config.json"), JSON.stringify({ imageBuidler: "docker" }));
    const typo = await build(freshImage(), { builder: new RecordingBuilder([]) }).catch((e) => e);
    expect(typo.message).toContain(join(project, "kiln.config.json"));
    expect(typo.message).toContain('"imageBuidler"');
    expect(typo.hint).toContain("imageBuilder");
  });
});

describe("no duplicate work", () => {
  it("concurrent build() calls for the same image share one build and every caller gets the events", async () => {
    const builder = new RecordingBuilder([answering(null)]);
    builder.delayMs = 100;
    const image = freshImage();
    const a: BuildEvent[] = [];
    const b: BuildEvent[] = [];
    const p1 = build(image, { builder, onEvent: (e) => a.push(e) });
    const p2 = build(image, { builder, onEvent: (e) => b.push(e) });
    const p3 = build(Image.fromJSON(image.toJSON()), { builder });
    expect(p2).toBe(p1);
    const results = await Promise.all([p1, p2, p3]);
    expect(builder.calls.length).toBe(1);
    expect(results.every((r) => r.outcome === "built" && r.uri === image.uri)).toBe(true);
    expect(b.map((e) => e.type)).toContain("build.step");
    expect(a.map((e) => e.type)).toEqual(b.map((e) => e.type));
    // Different platforms are a different image.
    await build(image.clone({ platform: ["linux/arm64"] }), { builder });
    expect(builder.calls.length).toBe(2);
  });

  it("a concurrent call that asks for another builder or strict checking is not folded into the first", async () => {
    const first = new RecordingBuilder([]);
    const second = new RecordingBuilder([]);
    first.delayMs = 100;
    second.delayMs = 100;
    const image = freshImage();
    const results = await Promise.all([
      build(image, { builder: first }),
      build(image, { builder: second }),
      build(image, { builder: first, strict: true }),
      build(image, { builder: first }),
    ]);
    // first: the plain call and its identical twin share one build; the strict call is its own.
    expect(first.calls.length).toBe(2);
    expect(second.calls.length).toBe(1);
    expect(results.map((r) => r.outcome)).toEqual(["built", "built", "built", "built"]);
    expect(buildKey(image, { builder: "docker" })).not.toBe(buildKey(image, { builder: "other" }));
    expect(buildKey(image, { builder: first })).toBe(buildKey(image, { builder: first }));
    expect(buildKey(image, { projectDir: "/a" })).not.toBe(buildKey(image, { projectDir: "/b" }));
    // An explicit strict: false overrides KILN_STRICT, so it is not "not given".
    expect(buildKey(image, { strict: false })).not.toBe(buildKey(image, {}));
    // Secrets: the same values share, other values do not, and the key holds no value.
    const key = buildKey(image, { secrets: { TOKEN: "value-one" } });
    expect(key).toBe(buildKey(image, { secrets: { TOKEN: "value-one" } }));
    expect(key).not.toBe(buildKey(image, { secrets: { TOKEN: "value-two" } }));
    expect(key).not.toBe(buildKey(image, {}));
    expect(key).not.toContain("value-one");
  });

  it("an aborted caller does not cancel a build another caller still waits for", async () => {
    const builder = new RecordingBuilder([]);
    builder.delayMs = 150;
    const image = freshImage();
    const controller = new AbortController();
    const leaving = build(image, { builder, signal: controller.signal });
    const staying = build(image, { builder });
    controller.abort();
    await expect(leaving).rejects.toSatisfy((e: unknown) => KilnError.isInstance(e) && (e as KilnError).code === "KILN_CANCELLED");
    expect((await staying).outcome).toBe("built");
    expect(builder.calls.length).toBe(1);
  });

  it("a builder failure becomes a BuildFailedError event with credentials redacted", async () => {
    const builder: ImageBuilder = {
      async buildImage() {
        throw new Error("push to https://ci:s3cret@reg.example/v2 denied; X-Registry-Auth: eyJzZWNyZXQiOiJ4In0=");
      },
    };
    const events: BuildEvent[] = [];
    const error = await build(freshImage(), { builder, onEvent: (e) => events.push(e) }).catch((e) => e);
    expect(error.code).toBe("KILN_BUILD_FAILED");
    const last = events.at(-1)!;
    expect(last.type).toBe("error");
    expect(JSON.stringify(last)).not.toContain("s3cret");
    expect(JSON.stringify(last)).not.toContain("eyJzZWNyZXQiOiJ4In0=");
    expect(error.message).not.toContain("s3cret");
  });
});

describe("credential redaction", async () => {
  const { redactSecrets, redactUrl, serializeError } = await import("../src/redact.js");
  it("removes URL userinfo, Authorization / X-Registry-Auth values, bearer tokens and password fields", () => {
    const text = [
      "GET https://alice:pa55w0rd@ghcr.io/v2/ failed",
      "Authorization: Basic YWxpY2U6cGE1NXcwcmQ=",
      '{"X-Registry-Auth":"eyJ1c2VybmFtZSI6ImEifQ=="}',
      "token was Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig",
      '{"password":"hunter2","username":"bob"}',
    ].join("\n");
    const clean = redactSecrets(text);
    for (const secret of ["pa55w0rd", "YWxpY2U6cGE1NXcwcmQ=", "eyJ1c2VybmFtZSI6ImEifQ==", "eyJhbGciOiJIUzI1NiJ9.payload.sig", "hunter2"]) {
      expect(clean).not.toContain(secret);
    }
    expect(clean).toContain("https://***@ghcr.io/v2/");
    expect(clean).toContain('"username":"bob"');
    expect(redactSecrets(clean)).toBe(clean);
    expect(redactUrl("https://u:p@reg.example/v2/?token=abc&n=1")).toBe("https://***@reg.example/v2/?token=***&n=1");
    const error = new ConfigError("bad https://u:secret@x.example", { hint: "try Authorization: Bearer abcdefghijkl" });
    expect(JSON.stringify(serializeError(error))).not.toMatch(/secret@|abcdefghijkl/);
  });
});

describe("events from plugins", () => {
  it("a builder's raw log lines and step names reach listeners with credentials redacted", async () => {
    const leaky: ImageBuilder = {
      async buildImage(image, options) {
        options.onEvent?.({ type: "build.step", image: image.uri, step: "RUN curl https://bob:hunter2@example.com/x", time: Date.now() });
        options.onEvent?.({ type: "build.log", image: image.uri, line: "Authorization: Bearer abcdefghijklmnop", time: Date.now() });
        return { uri: image.uri };
      },
    };
    const events: BuildEvent[] = [];
    await build(freshImage(), { builder: leaky, onEvent: (e) => events.push(e) });
    const text = JSON.stringify(events);
    expect(text).toContain("RUN curl https://***@example.com/x");
    expect(text).not.toContain("hunter2");
    expect(text).not.toContain("abcdefghijklmnop");
  });

  it("re-registering a builder by name replaces the one already loaded", async () => {
    const first = new RecordingBuilder([]);
    const second = new RecordingBuilder([]);
    registerImageBuilder("swap_me", first);
    try {
      await build(freshImage(), { builder: "swap_me" });
      registerImageBuilder("swap_me", second);
      await build(freshImage(), { builder: "swap_me" });
      expect([first.calls.length, second.calls.length]).toEqual([1, 1]);
    } finally {
      unregisterImageBuilder("swap_me");
    }
  });
});
