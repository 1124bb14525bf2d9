/**
 * The builder conformance suite: dry run builds nothing and returns the URI; build returns an
 * ImageBuild with a URI; the engine finds what was built; force rebuilds; and cancellation — an
 * aborted build rejects promptly with an abort error and pushes nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ImageBuild, ImageBuilder } from "../builder.js";
import { toNamedChecker } from "../checkers.js";
import { build as engineBuild } from "../engine.js";
import type { BuildEvent } from "../events.js";
import type { Image } from "../image.js";
import { isAbortError, settle, within } from "./cancellation.js";

export interface BuilderConformanceSetup {
  builder: ImageBuilder;
  /** A small image this builder can build and that does not exist yet. */
  image: Image;
  /** Ground truth: is `uri` really there (e.g. a registry HEAD)? Lets the suite prove a dry run or an aborted build built nothing. */
  exists?: (uri: string) => Promise<boolean>;
  cleanup?: () => Promise<void>;
}

export interface BuilderConformanceOptions {
  /** How soon after the abort an aborted build must reject (default 5000 ms). */
  abortDeadlineMs?: number;
  /** When to abort the build in flight: at the first event it reports for which this is true (default: its first event). */
  abortOn?: (event: BuildEvent) => boolean;
  /** The plugin's own tests, run inside the suite's `describe`; `setup()` is the factory's result. */
  extraTests?: (setup: () => BuilderConformanceSetup) => void;
}

/** The one-argument form: `describeBuilderConformance(name, { create, extraTests })`. */
export interface BuilderConformanceSuite extends BuilderConformanceOptions {
  create: () => Promise<BuilderConformanceSetup>;
}

/** A variant of the suite's image (its own tag), so a cancelled build never touches the image the other tests build. */
function variant(image: Image, name: string): Image {
  return image.withEnvVars({ KILN_CONFORMANCE_CANCELLED: name });
}

/** After an abort, the image must not appear — not even late, from work the abort did not stop. */
async function assertNothingPushed(setup: BuilderConformanceSetup, uri: string): Promise<void> {
  if (!setup.exists) return;
  await new Promise((resolve) => setTimeout(resolve, 500));
  expect(await setup.exists(uri), `${uri} was pushed although its build was aborted`).toBe(false);
}

/** The builder contract (see the file comment); `options` tunes the abort case and adds the plugin's own tests. */
export function describeBuilderConformance(
  name: string,
  factoryOrSuite: (() => Promise<BuilderConformanceSetup>) | BuilderConformanceSuite,
  maybeOptions: BuilderConformanceOptions = {},
): void {
  const { create, ...options } = typeof factoryOrSuite === "function" ? { create: factoryOrSuite, ...maybeOptions } : factoryOrSuite;
  const abortDeadlineMs = options.abortDeadlineMs ?? 5_000;
  const abortOn = options.abortOn ?? (() => true);
  describe(`${name} — ImageBuilder conformance`, () => {
    let setup: BuilderConformanceSetup;
    let built: ImageBuild | undefined;
    beforeAll(async () => {
      setup = await create();
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

    it("an already-aborted signal: the build rejects with an abort error and builds nothing", async () => {
      const image = variant(setup.image, "before-start");
      const signal = AbortSignal.abort(new Error("conformance: cancelled before the build"));
      const outcome = await settle(within(setup.builder.buildImage(image, { signal }), abortDeadlineMs, "an already-aborted build"), () => 0);
      expect(outcome.rejected, `built ${JSON.stringify(outcome.value)} despite the aborted signal`).toBe(true);
      expect(isAbortError(outcome.error, signal), `not an abort error: ${String(outcome.error)}`).toBe(true);
      await assertNothingPushed(setup, image.uri);
    });

    it(`an abort during the build: it rejects within ${abortDeadlineMs} ms with an abort error and pushes nothing`, async () => {
      const image = variant(setup.image, "mid-build");
      const controller = new AbortController();
      let abortedAt = 0;
      const abort = () => {
        if (abortedAt) return;
        abortedAt = Date.now();
        controller.abort(new Error("conformance: cancelled mid-build"));
      };
      const events: BuildEvent[] = [];
      const running = setup.builder.buildImage(image, {
        signal: controller.signal,
        onEvent: (event) => {
          events.push(event);
          if (abortOn(event)) abort();
        },
      });
      // A builder that reports nothing is aborted shortly after it started.
      const fallback = setTimeout(abort, 200);
      const outcome = await within(
        settle(running, () => abortedAt),
        120_000,
        "the aborted build",
      );
      clearTimeout(fallback);
      expect(abortedAt, `the build ended before the abort (events: ${events.map((e) => e.type).join(", ")})`).toBeGreaterThan(0);
      expect(outcome.rejected, `built ${JSON.stringify(outcome.value)} although it was aborted`).toBe(true);
      expect(isAbortError(outcome.error, controller.signal), `not an abort error: ${String(outcome.error)}`).toBe(true);
      expect(outcome.afterMs).toBeLessThan(abortDeadlineMs);
      await assertNothingPushed(setup, image.uri);
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

    options.extraTests?.(() => setup);
  });
}
