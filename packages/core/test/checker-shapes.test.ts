/**
 * Checker shapes are normalised once, in core (checkers.ts): a class with an instance
 * `imageExists` is answered by its one default instance (created once per class, shared with the
 * class's static form through `defaultCheckerInstance`), whose `name` and `answersFor` count; a
 * class with only a static `imageExists` (the guide's bare shape) is called as it is.
 */
import { describe, expect, it } from "vitest";
import type { Architecture, ImageCheckOptions } from "../src/index.js";
import { defaultCheckerInstance, runCheckers, toNamedChecker } from "../src/checkers.js";
import { CheckFailedError } from "../src/errors.js";

describe("one checker shape, normalised in core", () => {
  it("a class with an instance method is created once per class, however often the engine asks", async () => {
    let created = 0;
    class CountingChecker {
      readonly name = "counting";
      constructor() {
        created++;
      }
      async imageExists(repository: string, tag: string) {
        return `${repository}:${tag}`;
      }
    }
    const first = toNamedChecker(CountingChecker);
    const second = toNamedChecker(CountingChecker);
    expect(await first.imageExists("r.example/app", "t")).toBe("r.example/app:t");
    expect(await second.imageExists("r.example/app", "t")).toBe("r.example/app:t");
    expect(created).toBe(1);
    expect(defaultCheckerInstance(CountingChecker)).toBe(defaultCheckerInstance(CountingChecker));
    expect(created).toBe(1);
    expect(first.name).toBe("counting");
  });

  it("the guide's static form delegating to defaultCheckerInstance shares the engine's instance, its name and answersFor", async () => {
    const seen: object[] = [];
    class HubLikeChecker {
      readonly name = "hub-like";
      static imageExists(repository: string, tag: string, arch?: readonly Architecture[], options?: ImageCheckOptions) {
        return defaultCheckerInstance(HubLikeChecker).imageExists(repository, tag, arch, options);
      }
      answersFor(repository: string) {
        return repository.startsWith("hub.example/");
      }
      async imageExists(repository: string, tag: string, _arch?: readonly Architecture[], _options?: ImageCheckOptions) {
        seen.push(this);
        return `${repository}:${tag}`;
      }
    }
    const named = toNamedChecker(HubLikeChecker);
    expect(named.name).toBe("hub-like");
    expect(named.answersFor?.("hub.example/app")).toBe(true);
    expect(named.answersFor?.("ghcr.io/acme/app")).toBe(false);
    await named.imageExists("hub.example/app", "t");
    await HubLikeChecker.imageExists("hub.example/app", "t");
    expect(seen).toHaveLength(2);
    expect(seen[0]).toBe(seen[1]);
    // Its answersFor reaches the engine: another registry's image is not asked, and strict mode says so.
    const error = await runCheckers([named], "ghcr.io/acme/app", "t", ["linux/amd64"], { image: "ghcr.io/acme/app:t", strict: true }).catch((e: unknown) => e);
    expect(CheckFailedError.isInstance(error)).toBe(true);
    expect(seen).toHaveLength(2);
    // The registered name wins over the instance's own.
    expect(toNamedChecker(HubLikeChecker, "registered").name).toBe("registered");
  });

  it("a class with only a static imageExists is called as it is, named after the class", async () => {
    class GuideChecker {
      static async imageExists(repository: string, tag: string) {
        return `${repository}:${tag}`;
      }
    }
    const named = toNamedChecker(GuideChecker);
    expect(named.name).toBe("GuideChecker");
    expect(await named.imageExists("r.example/app", "t")).toBe("r.example/app:t");
    expect(named.answersFor).toBeUndefined();
  });

  it("a class that needs constructor arguments still answers through its static form", async () => {
    class NeedsArguments {
      constructor(readonly url: string) {
        if (typeof url !== "string") throw new TypeError("url required");
      }
      static async imageExists(repository: string, tag: string) {
        return new NeedsArguments("https://r.example").imageExists(repository, tag);
      }
      async imageExists(repository: string, tag: string) {
        return `${this.url}/${repository}:${tag}`;
      }
    }
    const named = toNamedChecker(NeedsArguments as never);
    expect(await named.imageExists("app", "t")).toBe("https://r.example/app:t");
  });
});
