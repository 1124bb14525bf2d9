// Graph builds and many images per run through the engine (issue 17), with an in-process builder that
// records its calls (a unit test: the real builders are exercised in @kiln/docker and @kiln/oci).
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import type { BuildImageOptions, ImageBuild, ImageBuilder, ImageCheckerLike } from "../src/builder.js";
import { BaseImageFailedError, buildAll, DEFAULT_BUILD_CONCURRENCY } from "../src/buildAll.js";
import { build, init } from "../src/engine.js";
import { ValidationError } from "../src/errors.js";
import { Image } from "../src/image.js";

const scratch = mkdtempSync(join(tmpdir(), "kiln-build-all-"));
process.env.KILN_LOCK_DIR = join(scratch, "locks");
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
beforeEach(() => init({ projectDir: scratch }));

let run = 0;
const unique = () => `${process.pid}-${++run}-${Date.now()}`;

/** Records every build (with the FROM it was given), keeps a store its checker reads, fails on request. */
class RecordingBuilder implements ImageBuilder {
  readonly built: Array<{ uri: string; from: string }> = [];
  readonly store = new Set<string>();
  /** The digest each build reported, by URI. */
  readonly digests = new Map<string, string>();
  inFlight = 0;
  maxInFlight = 0;
  delayMs = 20;
  readonly failing = new Set<string>();
  readonly aborted: string[] = [];
  getCheckers(): ImageCheckerLike[] {
    return [{ imageExists: async (repository: string, tag: string) => (this.store.has(`${repository}:${tag}`) ? `${repository}:${tag}` : null) }];
  }
  async buildImage(image: Image, options: BuildImageOptions = {}): Promise<ImageBuild> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, this.delayMs);
        options.signal?.addEventListener(
          "abort",
          () => {
            clearTimeout(timer);
            this.aborted.push(image.name);
            reject(options.signal!.reason);
          },
          { once: true },
        );
      });
      if (this.failing.has(image.name)) throw new Error(`step failed in ${image.name}`);
      const base = image.spec.base;
      this.built.push({ uri: image.uri, from: base.kind === "image" ? base.ref : "dockerfile" });
      this.store.add(image.uri);
      const digest = `sha256:${createHash("sha256").update(image.uri).digest("hex")}`;
      this.digests.set(image.uri, digest);
      return { uri: image.uri, digest };
    } finally {
      this.inFlight--;
    }
  }
}

function threeDeep(id: string, registry?: string) {
  const reg = registry ? { registry } : {};
  const bottom = Image.fromBase("busybox:1.35", { ...reg, name: `bottom-${id}` }).withEnvVars({ L: "bottom" });
  const middle = Image.fromBase(bottom, { ...reg, name: `middle-${id}` }).withEnvVars({ L: "middle" });
  const top = Image.fromBase(middle, { ...reg, name: `top-${id}` }).withEnvVars({ L: "top" });
  return { bottom, middle, top };
}

describe("build() of an image built on Kiln images", () => {
  it("builds the missing ones below first, in order, FROM naming each base's built URI and digest (default registry applied)", async () => {
    const builder = new RecordingBuilder();
    const id = unique();
    const { bottom, middle, top } = threeDeep(id); // declared without a registry
    process.env.KILN_IMAGE_REGISTRY = "reg.example:5000";
    try {
      const result = await build(top, { builder });
      expect(result.outcome).toBe("built");
      const withRegistry = (i: Image) => `reg.example:5000/${i.name}:${i.tag}`;
      // By digest too: the very image built below, even if its tag were pushed again meanwhile.
      const byDigest = (i: Image) => `${withRegistry(i)}@${builder.digests.get(withRegistry(i))}`;
      expect(builder.built).toEqual([
        { uri: withRegistry(bottom), from: "busybox:1.35" },
        { uri: withRegistry(middle), from: byDigest(bottom) },
        { uri: withRegistry(top), from: byDigest(middle) },
      ]);
      // Built again: every level is found, nothing is built.
      const again = await build(top, { builder });
      expect(again.outcome).toBe("found");
      expect(builder.built).toHaveLength(3);
    } finally {
      delete process.env.KILN_IMAGE_REGISTRY;
    }
  });

  it("a change at one level rebuilds that level and the ones above, and nothing below", async () => {
    const builder = new RecordingBuilder();
    const id = unique();
    const first = threeDeep(id, "reg.example");
    await build(first.top, { builder });
    builder.built.length = 0;
    const middle = Image.fromBase(first.bottom, { registry: "reg.example", name: `middle-${id}` }).withEnvVars({ L: "middle, changed" });
    const top = Image.fromBase(middle, { registry: "reg.example", name: `top-${id}` }).withEnvVars({ L: "top" });
    await build(top, { builder });
    expect(builder.built.map((b) => b.uri)).toEqual([middle.uri, top.uri]);
  });

  it("fromBase(kilnImage) without layers builds the base and is it", async () => {
    const builder = new RecordingBuilder();
    const { middle } = threeDeep(unique(), "reg.example");
    const alias = Image.fromBase(middle, { registry: "reg.example", name: "alias" });
    const result = await build(alias, { builder });
    expect(result.uri).toBe(middle.uri);
    expect(builder.built.map((b) => b.uri).at(-1)).toBe(middle.uri);
  });

  it("a dry run builds nothing at any level", async () => {
    const builder = new RecordingBuilder();
    const { top } = threeDeep(unique(), "reg.example");
    const result = await build(top, { builder, dryRun: true });
    expect(result.outcome).toBe("would-build");
    expect(builder.built).toEqual([]);
  });
});

describe("buildAll", () => {
  it("builds independent images concurrently up to the limit, each once, results in the order given", async () => {
    const builder = new RecordingBuilder();
    builder.delayMs = 60;
    const id = unique();
    const images = Array.from({ length: 10 }, (_, i) => ({
      name: `img${i}`,
      image: Image.fromBase("busybox:1.35", { registry: "reg.example", name: `many-${id}-${i}` }).withEnvVars({ I: String(i) }),
    }));
    const results = await buildAll(images, { builder, concurrency: 3 });
    expect(results.map((r) => [r.name, r.action])).toEqual(images.map((i) => [i.name, "built"]));
    expect(results.every((r) => r.digest === builder.digests.get(r.uri) && r.uri === images.find((i) => i.name === r.name)!.image.uri)).toBe(true);
    expect(builder.maxInFlight).toBe(3);
    expect(builder.built).toHaveLength(10);
    const defaults = new RecordingBuilder();
    defaults.delayMs = 60;
    await buildAll(
      images.map((i) => i.image.withEnvVars({ D: id })),
      { builder: defaults },
    );
    expect(defaults.maxInFlight).toBe(DEFAULT_BUILD_CONCURRENCY);
  });

  it("a base shared by two images is built once, before both, and reported as a dependency", async () => {
    const builder = new RecordingBuilder();
    const id = unique();
    const base = Image.fromBase("busybox:1.35", { registry: "reg.example", name: `shared-${id}` }).withEnvVars({ S: "1" });
    const a = Image.fromBase(base, { registry: "reg.example", name: `a-${id}` }).withEnvVars({ A: "1" });
    const b = Image.fromBase(base, { registry: "reg.example", name: `b-${id}` }).withEnvVars({ B: "1" });
    const results = await buildAll(
      [
        { name: "a", image: a },
        { name: "b", image: b },
      ],
      { builder, concurrency: 1 },
    );
    expect(builder.built.filter((x) => x.uri === base.uri)).toHaveLength(1);
    expect(builder.built[0]!.uri).toBe(base.uri);
    expect(results.map((r) => [r.name, r.action, r.dependency])).toEqual([
      ["a", "built", false],
      ["b", "built", false],
      [base.uri, "built", true],
    ]);
  });

  it("keeps going when images fail: each failure reported, images above a failed base fail without building", async () => {
    const builder = new RecordingBuilder();
    const id = unique();
    const ok = Array.from({ length: 5 }, (_, i) =>
      Image.fromBase("busybox:1.35", { registry: "reg.example", name: `ok-${id}-${i}` }).withEnvVars({ I: String(i) }),
    );
    const broken = Image.fromBase("busybox:1.35", { registry: "reg.example", name: `broken-${id}` }).withEnvVars({ X: "1" });
    const brokenBase = Image.fromBase("busybox:1.35", { registry: "reg.example", name: `brokenbase-${id}` }).withEnvVars({ X: "2" });
    const above = Image.fromBase(brokenBase, { registry: "reg.example", name: `above-${id}` }).withEnvVars({ X: "3" });
    builder.failing.add(broken.name).add(brokenBase.name);
    const results = await buildAll([...ok, broken, above], { builder, concurrency: 2 });
    const action = (i: Image) => results.find((r) => r.image.uri === i.uri)!.action;
    for (const image of ok) expect(action(image)).toBe("built");
    expect(action(broken)).toBe("failed");
    expect(action(brokenBase)).toBe("failed");
    expect(action(above)).toBe("failed");
    const aboveResult = results.find((r) => r.image.uri === above.uri)!;
    expect(BaseImageFailedError.isInstance(aboveResult.error)).toBe(true);
    expect((aboveResult.error as Error).message).toContain(brokenBase.uri);
    expect((results.find((r) => r.image.uri === broken.uri)!.error as Error).message).toContain(`step failed in ${broken.name}`);
    expect(builder.built.map((b) => b.uri)).not.toContain(above.uri);
  });

  it("failFast: the first failure aborts the builds under way through their AbortSignal; the rest are cancelled", async () => {
    const builder = new RecordingBuilder();
    const id = unique();
    const images = Array.from({ length: 8 }, (_, i) =>
      Image.fromBase("busybox:1.35", { registry: "reg.example", name: `ff-${id}-${i}` }).withEnvVars({ I: String(i) }),
    );
    // The first fails fast; the second is slow and still running when it does.
    builder.failing.add(images[0]!.name);
    const slow = images[1]!.name;
    const original = builder.buildImage.bind(builder);
    builder.buildImage = async (image, options) => {
      builder.delayMs = image.name === slow ? 5_000 : 20;
      return original(image, options);
    };
    const started = Date.now();
    const results = await buildAll(images, { builder, concurrency: 2, failFast: true });
    expect(Date.now() - started).toBeLessThan(4_000);
    expect(results[0]!.action).toBe("failed");
    expect(results[1]!.action).toBe("cancelled");
    expect(builder.aborted).toContain(slow);
    expect(results.slice(2).every((r) => r.action === "cancelled")).toBe(true);
    expect(builder.built).toEqual([]);
  });

  it("rejects a bad concurrency and unknown options", async () => {
    await expect(buildAll([], { concurrency: 0 })).rejects.toThrow(ValidationError);
    await expect(buildAll([], { failfast: true } as never)).rejects.toThrow(/did you mean "failFast"/);
  });
});
