/**
 * `@kiln/core/testing` — conformance suites a plugin runs against its own checker and builder, so
 * every plugin behaves the way the engine (and the reference guide) expects. Uses vitest (an
 * optional peer dependency of @kiln/core, imported only by this entry).
 *
 * ```ts
 * import { describeCheckerConformance } from "@kiln/core/testing";
 * describeCheckerConformance("MyImageChecker", async () => ({
 *   checker: MyImageChecker,                          // a class with static imageExists, or an instance
 *   present: { repository: "localhost:5000/app", tag: "v1", platforms: ["linux/amd64"] },
 *   absent: { repository: "localhost:5000/app", tag: "nope", platforms: ["linux/amd64"] },
 *   wrongArch: { repository: "localhost:5000/app", tag: "v1", platforms: ["linux/amd64", "linux/arm64"] },
 *   failing: () => new MyImageChecker({ url: "http://127.0.0.1:1" }),
 * }));
 * ```
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ImageBuild, ImageBuilder, ImageCheckerLike } from "../builder.js";
import { toNamedChecker } from "../checkers.js";
import { build as engineBuild } from "../engine.js";
import type { BuildEvent } from "../events.js";
import type { Image } from "../image.js";
import type { Architecture } from "../layers.js";

export interface CheckTarget {
  repository: string;
  tag: string;
  platforms: Architecture[];
}

export interface CheckerConformanceSetup {
  checker: ImageCheckerLike;
  /** An image that exists for all `platforms`. */
  present: CheckTarget;
  /** An image that does not exist. */
  absent: CheckTarget;
  /** An image that exists, but not for every one of `platforms`. */
  wrongArch?: CheckTarget;
  /** A checker that cannot answer (unreachable service, bad credentials): it must throw. */
  failing?: () => ImageCheckerLike;
  cleanup?: () => Promise<void>;
}

export interface BuilderConformanceSetup {
  builder: ImageBuilder;
  /** A small image this builder can build and that does not exist yet. */
  image: Image;
  /** Ground truth: is `uri` really there (e.g. a registry HEAD)? Lets the suite prove a dry run built nothing. */
  exists?: (uri: string) => Promise<boolean>;
  cleanup?: () => Promise<void>;
}

async function ask(checker: ImageCheckerLike, target: CheckTarget): Promise<string | null> {
  return toNamedChecker(checker).imageExists(target.repository, target.tag, target.platforms);
}

/** The checker contract: present → its URI, absent → null, a missing platform → null, failure → throws. */
export function describeCheckerConformance(name: string, factory: () => Promise<CheckerConformanceSetup>): void {
  describe(`${name} — ImageChecker conformance`, () => {
    let setup: CheckerConformanceSetup;
    beforeAll(async () => {
      setup = await factory();
    });
    afterAll(async () => {
      await setup?.cleanup?.();
    });

    it("has the checker shape (an instance, or a class with a static imageExists)", () => {
      const named = toNamedChecker(setup.checker);
      expect(typeof named.imageExists).toBe("function");
      expect(named.name.length).toBeGreaterThan(0);
    });

    it("returns the image's URI when it exists for every platform", async () => {
      const uri = await ask(setup.checker, setup.present);
      expect(typeof uri).toBe("string");
      const lastSegment = setup.present.repository.split("/").pop()!;
      expect(uri).toContain(lastSegment);
    });

    it("returns null for an image that does not exist", async () => {
      expect(await ask(setup.checker, setup.absent)).toBeNull();
    });

    it("returns null when the image lacks one of the requested platforms", async (context) => {
      if (!setup.wrongArch) return context.skip("no wrongArch case given by the factory");
      expect(await ask(setup.checker, setup.wrongArch)).toBeNull();
    });

    it("throws (rather than answering) when it cannot tell", async (context) => {
      if (!setup.failing) return context.skip("no failing checker given by the factory");
      await expect(ask(setup.failing(), setup.present)).rejects.toBeDefined();
    });

    it("answers concurrent questions consistently", async () => {
      const answers = await Promise.all([ask(setup.checker, setup.present), ask(setup.checker, setup.absent), ask(setup.checker, setup.present)]);
      expect(typeof answers[0]).toBe("string");
      expect(answers[1]).toBeNull();
      expect(answers[2]).toBe(answers[0]);
    });
  });
}

/** The builder contract: dry run builds nothing and returns the URI; build returns an ImageBuild with a URI; force rebuilds. */
export function describeBuilderConformance(name: string, factory: () => Promise<BuilderConformanceSetup>): void {
  describe(`${name} — ImageBuilder conformance`, () => {
    let setup: BuilderConformanceSetup;
    let built: ImageBuild | undefined;
    beforeAll(async () => {
      setup = await factory();
    });
    afterAll(async () => {
      await setup?.cleanup?.();
    });

    it("getCheckers() returns nothing or usable checkers", () => {
      const checkers = setup.builder.getCheckers?.() ?? [];
      expect(Array.isArray(checkers)).toBe(true);
      for (const checker of checkers) expect(typeof toNamedChecker(checker).imageExists).toBe("function");
    });

    it("dry run returns the URI it would build, without building", async () => {
      const result = await setup.builder.buildImage(setup.image, { dryRun: true });
      expect(result.uri).toBe(setup.image.uri);
      if (setup.exists) expect(await setup.exists(setup.image.uri)).toBe(false);
    });

    it("builds: returns an ImageBuild whose uri names the image", async () => {
      const events: BuildEvent[] = [];
      built = await setup.builder.buildImage(setup.image, { onEvent: (e) => events.push(e) });
      expect(typeof built.uri).toBe("string");
      expect(built.uri).toContain(setup.image.tag);
      if (setup.exists) expect(await setup.exists(built.uri!)).toBe(true);
    });

    it("through the engine, a built image is found by its checkers and not built again", async (context) => {
      const checkers = setup.builder.getCheckers?.() ?? [];
      if (checkers.length === 0) return context.skip("the builder has no checkers");
      const result = await engineBuild(setup.image, { builder: setup.builder });
      expect(result.outcome).toBe("found");
    });

    it("force rebuilds an image that exists", async () => {
      const events: BuildEvent[] = [];
      const result = await engineBuild(setup.image, { builder: setup.builder, force: true, onEvent: (e) => events.push(e) });
      expect(result.outcome).toBe("built");
      expect(events.some((e) => e.type === "check.skipped" && e.reason === "force")).toBe(true);
      expect(result.uri).toContain(setup.image.tag);
    });
  });
}
