/**
 * The engine and build secrets: values are resolved only when the builder is about to run, handed to
 * it, and scrubbed from every event and error it produces — even a RUN step that echoes one.
 */
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import type { BuildImageOptions, ImageBuild, ImageBuilder, ImageCheckerLike } from "../src/builder.js";
import { build, init } from "../src/engine.js";
import { BuildFailedError, type KilnError, MissingSecretError } from "../src/errors.js";
import type { BuildEvent } from "../src/events.js";
import { Image } from "../src/image.js";
import { resolveBuildSecrets } from "../src/secrets.js";

const scratch = mkdtempSync(join(tmpdir(), "kiln-secrets-engine-"));
const lockDir = join(scratch, "locks");
const savedLockDir = process.env.KILN_LOCK_DIR;
process.env.KILN_LOCK_DIR = lockDir;
afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
  if (savedLockDir === undefined) delete process.env.KILN_LOCK_DIR;
  else process.env.KILN_LOCK_DIR = savedLockDir;
});

const ENV_ID = `KILN_TEST_SECRET_${process.pid}`;
const NPM_VALUE = "npm_T0ken-9f8e7d6c5b4a";
const ENV_VALUE = "env-s3cret-0123456789";
const CONF_VALUE = "[global]\nindex-url = https://ci:pa55word-xyz@pypi.internal/simple\n";

beforeEach(() => {
  init({ projectDir: join(scratch, "project") });
  process.env[ENV_ID] = ENV_VALUE;
});
afterEach(() => {
  delete process.env[ENV_ID];
  init({});
});

let counter = 0;
function secretImage(): Image {
  return Image.fromBase("kiln-test/busybox:1.35", { registry: "localhost:5000", name: "secrets-test" })
    .withEnvVars({ RUN: `${process.pid}-${++counter}` })
    .withCommands("cat /run/secrets/NPM_TOKEN", { secrets: ["NPM_TOKEN", { id: "pip_conf", target: "/root/.config/pip/pip.conf" }] })
    .withCommands("true", { secrets: [ENV_ID] });
}
const provided = { NPM_TOKEN: NPM_VALUE, pip_conf: CONF_VALUE, UNDECLARED: "ignored-value" };

/** A builder whose RUN step prints every secret it was given, then (optionally) fails quoting them. */
class EchoingBuilder implements ImageBuilder {
  readonly received: Array<BuildImageOptions["secrets"]> = [];
  constructor(
    private readonly fail: "kiln" | "plain" | false = false,
    private readonly checkers: ImageCheckerLike[] = [],
  ) {}
  getCheckers() {
    return this.checkers;
  }
  async buildImage(image: Image, options: BuildImageOptions): Promise<ImageBuild> {
    this.received.push(options.secrets);
    // What a real builder does: resolve from options (works with or without the engine).
    const values = [...resolveBuildSecrets(image, options.secrets).values()];
    const shown = values.join(" | ");
    const now = Date.now();
    options.onEvent?.({ type: "build.step", image: image.uri, step: `RUN echo ${values[0]}`, time: now });
    for (const line of shown.split("\n")) options.onEvent?.({ type: "build.log", image: image.uri, step: "RUN cat", line, time: now });
    options.onEvent?.({ type: "warning", image: image.uri, message: `saw ${values[2]}`, time: now });
    if (this.fail === "kiln") {
      throw new BuildFailedError(`step failed: ${values[0]}`, {
        hint: `check ${values[2]}`,
        details: { logTail: shown.split("\n"), image: image.uri },
        cause: new Error(`exit 1 after printing ${values[1]}`),
      });
    }
    if (this.fail === "plain") throw new Error(`daemon said: ${shown}`);
    return { uri: image.uri, digest: `sha256:${"b".repeat(64)}` };
  }
}

const SECRET_PARTS = [NPM_VALUE, ENV_VALUE, "pa55word-xyz", "index-url = https://ci:pa55word-xyz@pypi.internal/simple"];
function expectNoSecret(text: string): void {
  for (const part of SECRET_PARTS) expect(text).not.toContain(part);
}

describe("build secrets through the engine", () => {
  it("hands the builder exactly the declared secrets (provided first, then the env var) and redacts every echo", async () => {
    const builder = new EchoingBuilder();
    const events: BuildEvent[] = [];
    const result = await build(secretImage(), { builder, secrets: provided, onEvent: (e) => events.push(e) });
    expect(result.outcome).toBe("built");
    expect(builder.received).toEqual([{ NPM_TOKEN: NPM_VALUE, pip_conf: CONF_VALUE, [ENV_ID]: ENV_VALUE }]);
    const text = JSON.stringify(events);
    expectNoSecret(text);
    const logs = events.filter((e) => e.type === "build.log").map((e) => (e as { line: string }).line);
    expect(logs).toEqual(["*** | ***", "***", " | ***"]); // the pip.conf lines, each scrubbed
    expect(events.find((e) => e.type === "build.step")).toMatchObject({ step: "RUN echo ***" });
    expect(events.find((e) => e.type === "warning")).toMatchObject({ message: "saw ***" });
  });

  it("a builder's KilnError quoting secrets (message, hint, details, cause) reaches the caller and the error event scrubbed", async () => {
    const events: BuildEvent[] = [];
    const error = await build(secretImage(), { builder: new EchoingBuilder("kiln"), secrets: provided, onEvent: (e) => events.push(e) }).catch(
      (e: unknown) => e,
    );
    expect(BuildFailedError.isInstance(error)).toBe(true);
    const e = error as BuildFailedError;
    expect(e.message).toBe("step failed: ***");
    expect(e.hint).toBe("check ***");
    expect((e.details as { logTail: string[] }).logTail).toEqual(["*** | ***", "***", " | ***"]);
    expectNoSecret(JSON.stringify(e.toJSON()));
    expectNoSecret(String(e.stack));
    expectNoSecret(String((e.cause as Error).message) + String((e.cause as Error).stack));
    const last = events.at(-1)!;
    expect(last).toMatchObject({ type: "error", error: { code: "KILN_BUILD_FAILED", message: "step failed: ***" } });
    expectNoSecret(JSON.stringify(events));
  });

  it("a builder's plain Error becomes a BuildFailedError without the values", async () => {
    const events: BuildEvent[] = [];
    const error = await build(secretImage(), { builder: new EchoingBuilder("plain"), secrets: provided, onEvent: (e) => events.push(e) }).catch(
      (e: unknown) => e,
    );
    expect(BuildFailedError.isInstance(error)).toBe(true);
    expect((error as Error).message).toContain("daemon said: ***");
    expectNoSecret((error as Error).message);
    expectNoSecret(String(((error as Error).cause as Error).message));
    expectNoSecret(JSON.stringify(events));
  });

  it("a missing secret fails with MissingSecretError before the builder runs, and leaves no lock", async () => {
    const builder = new EchoingBuilder();
    const events: BuildEvent[] = [];
    const error = await build(secretImage(), { builder, secrets: { NPM_TOKEN: NPM_VALUE }, onEvent: (e) => events.push(e) }).catch((e: unknown) => e);
    expect(MissingSecretError.isInstance(error)).toBe(true);
    expect((error as KilnError).details).toEqual({ missing: ["pip_conf"] });
    expect(builder.received).toEqual([]);
    expect(events.map((e) => e.type)).not.toContain("build.start");
    expect(events.at(-1)).toMatchObject({ type: "error", error: { code: "KILN_MISSING_SECRET" } });
    expectNoSecret(JSON.stringify(events));
    expect(readdirSync(lockDir).filter((f) => f.endsWith(".lock"))).toEqual([]);
  });

  it("a found image and a dry run need no secret values", async () => {
    const image = secretImage();
    const found: ImageCheckerLike = { imageExists: async (repository, tag) => `${repository}:${tag}` };
    const builder = new EchoingBuilder(false, [found]);
    await expect(build(image, { builder })).resolves.toMatchObject({ outcome: "found" });
    const absent = new EchoingBuilder(false, [{ imageExists: async () => null }]);
    await expect(build(secretImage(), { builder: absent, dryRun: true })).resolves.toMatchObject({ outcome: "would-build" });
    expect([...builder.received, ...absent.received]).toEqual([]);
  });

  it("an image without secrets gets no secrets option, whatever the caller passes", async () => {
    const builder = new EchoingBuilder();
    const plain = Image.fromBase("kiln-test/busybox:1.35", { registry: "localhost:5000", name: "secrets-test" }).withEnvVars({
      RUN: `${process.pid}-${++counter}`,
    });
    await build(plain, { builder, secrets: provided });
    expect(builder.received).toEqual([undefined]);
  });
});
