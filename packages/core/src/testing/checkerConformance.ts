/**
 * The checker conformance suite: present → its URI, absent → null, a missing platform → null,
 * failure → throws; and cancellation, the contract that matters most — an aborted check rejects
 * (never answers null, which would build), promptly, closing its request and retrying nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ImageCheckerLike, ImageCheckOptions } from "../builder.js";
import { toNamedChecker } from "../checkers.js";
import type { Architecture } from "../layers.js";
import { isAbortError, settle, within } from "./cancellation.js";
import { startSilentServer, type SilentServer } from "./silentServer.js";

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

/** A checker whose request goes to the suite's silent server, and what to ask it. */
export interface HangingCheck {
  checker: ImageCheckerLike;
  target: CheckTarget;
  cleanup?: () => void | Promise<void>;
}

export interface CheckerConformanceOptions {
  /**
   * A checker pointed at `server` — a loopback TCP server that accepts connections and never
   * answers (`server.host` as a loopback registry, `server.url` as an endpoint). Given, the suite
   * proves an abort mid-request rejects within `abortDeadlineMs`, closes the connection and sends
   * nothing more. Every checker that makes network requests should give one.
   */
  hanging?: (server: SilentServer, setup: CheckerConformanceSetup) => HangingCheck | Promise<HangingCheck>;
  /** How soon after the abort an aborted check must reject (default 1000 ms). */
  abortDeadlineMs?: number;
  /** The plugin's own tests, run inside the suite's `describe`; `setup()` is the factory's result. */
  extraTests?: (setup: () => CheckerConformanceSetup) => void;
}

/** The one-argument form: `describeCheckerConformance(name, { create, hanging, extraTests })`. */
export interface CheckerConformanceSuite extends CheckerConformanceOptions {
  create: () => Promise<CheckerConformanceSetup>;
}

async function ask(checker: ImageCheckerLike, target: CheckTarget, options?: ImageCheckOptions): Promise<string | null> {
  const named = toNamedChecker(checker);
  return options
    ? named.imageExists(target.repository, target.tag, target.platforms, options)
    : named.imageExists(target.repository, target.tag, target.platforms);
}

/** The checker contract (see the file comment); `options` adds the mid-request abort case and the plugin's own tests. */
export function describeCheckerConformance(
  name: string,
  factoryOrSuite: (() => Promise<CheckerConformanceSetup>) | CheckerConformanceSuite,
  maybeOptions: CheckerConformanceOptions = {},
): void {
  const { create, ...options } = typeof factoryOrSuite === "function" ? { create: factoryOrSuite, ...maybeOptions } : factoryOrSuite;
  const abortDeadlineMs = options.abortDeadlineMs ?? 1_000;
  describe(`${name} — ImageChecker conformance`, () => {
    let setup: CheckerConformanceSetup;
    beforeAll(async () => {
      setup = await create();
    });
    afterAll(async () => {
      await setup?.cleanup?.();
    });

    it("has the checker shape (an instance, or a class with a static imageExists) and a name", () => {
      const named = toNamedChecker(setup.checker);
      expect(typeof named.imageExists).toBe("function");
      expect(named.name.length).toBeGreaterThan(0);
    });

    it("answers for the present image's registry (answersFor, when it has one, claims it)", () => {
      const named = toNamedChecker(setup.checker);
      expect(named.answersFor?.(setup.present.repository) ?? true).toBe(true);
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

    it("an already-aborted signal rejects with an abort error — for an absent and a present image, never an answer", async () => {
      for (const target of [setup.absent, setup.present]) {
        const signal = AbortSignal.abort(new Error("conformance: cancelled before the check"));
        const outcome = await settle(within(ask(setup.checker, target, { signal }), abortDeadlineMs, "an already-aborted check"), () => 0);
        expect(outcome.rejected, `answered ${JSON.stringify(outcome.value)} for ${target.repository}:${target.tag} despite the aborted signal`).toBe(true);
        expect(isAbortError(outcome.error, signal), `not an abort error: ${String(outcome.error)}`).toBe(true);
      }
    });

    if (options.hanging) {
      const hanging = options.hanging;
      it(`an abort during a request rejects within ${abortDeadlineMs} ms, closes the connection and sends nothing more (and an already-aborted check sends nothing)`, async () => {
        const server = await startSilentServer();
        let check: HangingCheck | undefined;
        try {
          check = await hanging(server, setup);
          // Already aborted: no request at all.
          const early = AbortSignal.abort(new Error("conformance: cancelled before the check"));
          const refused = await settle(within(ask(check.checker, check.target, { signal: early }), abortDeadlineMs, "an already-aborted check"), () => 0);
          expect(
            refused.rejected && isAbortError(refused.error, early),
            `an already-aborted check gave ${refused.rejected ? String(refused.error) : JSON.stringify(refused.value)}`,
          ).toBe(true);
          expect(server.requested, "an already-aborted check sent a request").toBe(0);
          const controller = new AbortController();
          let abortedAt = 0;
          const settled = settle(ask(check.checker, check.target, { signal: controller.signal }), () => abortedAt);
          // The request is in flight: it reached the server, which will never answer.
          await Promise.race([
            server.waitForRequest(5_000),
            settled.then((o) =>
              Promise.reject(new Error(`the check ended before its request reached the server: ${o.rejected ? String(o.error) : JSON.stringify(o.value)}`)),
            ),
          ]);
          abortedAt = Date.now();
          controller.abort(new Error("conformance: cancelled mid-request"));
          const outcome = await within(settled, abortDeadlineMs + 5_000, "the aborted check");
          expect(outcome.rejected, `answered ${JSON.stringify(outcome.value)} after the abort`).toBe(true);
          expect(isAbortError(outcome.error, controller.signal), `not an abort error: ${String(outcome.error)}`).toBe(true);
          expect(outcome.afterMs).toBeLessThan(abortDeadlineMs);
          // The request is really gone (not abandoned while it runs on to its own timeout) and not retried.
          await server.waitUntilClosed(1_000);
          const requests = server.requested;
          await new Promise((resolve) => setTimeout(resolve, 300));
          expect(server.requested).toBe(requests);
        } finally {
          await check?.cleanup?.();
          await server.stop();
        }
      });
    }

    options.extraTests?.(() => setup);
  });
}
