/**
 * A multi-platform image split across two real standalone buildkitds (amd64 pinned to one, arm64 —
 * RUN under qemu — to the other; BuildKit v0.11.6, KILN_TEST_BUILDKITD) pushing to a loopback
 * registry:
 * - `cacheTo`: each group exports its cache under its own ref, and two fresh buildkitds importing
 *   them (`cacheFrom`) take the RUN step of both platforms from the cache; the first build, asking
 *   for a cache that does not exist yet, succeeds with a warning;
 * - a split build imports the cache a single-endpoint build exported under the plain ref (each group
 *   imports its own ref and the one given), without a warning for the group refs it lacks;
 * - a group that fails cancels the other group's in-flight Solve: the build fails promptly with the
 *   failing group's error, the other daemon stops running the step, and nothing is tagged.
 * Skipped, with the reason, where KILN_TEST_BUILDKITD is not set.
 */
import { readdirSync, readFileSync } from "node:fs";
import { BuildFailedError, Image, RegistryClient, type Architecture } from "@kiln/core";
import {
  BUILDKITD_SKIP_REASON,
  ensureArm64Emulation,
  pushMultiArchBusybox,
  startBuildkitd,
  startRegistry,
  testBuildkitdBinary,
  uniqueName,
  type TestBuildkitd,
  type TestRegistry,
} from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BuildKitImageBuilder } from "../src/builder.js";
import { defaultCacheRef, groupCacheRef } from "../src/cache.js";
import { collector } from "./helpers.js";

const binary = testBuildkitdBinary();
const AMD64: Architecture = "linux/amd64";
const ARM64: Architecture = "linux/arm64";

/** The RUN step naming `marker` was reported for both platforms, and every report says cached. */
function expectRunStepCached(c: ReturnType<typeof collector>, marker: string, cache: string): void {
  const runSteps = c.of("build.step").filter((e) => e.step.includes(marker));
  for (const platform of [AMD64, ARM64]) {
    const steps = runSteps.filter((e) => e.platform === platform);
    expect(steps.length, `no RUN step reported for ${platform}`).toBeGreaterThan(0);
    expect(
      steps.every((e) => e.cached === true),
      `${platform}'s RUN step was not taken from ${cache}`,
    ).toBe(true);
  }
}

describe.skipIf(!binary)(`platforms split across standalone buildkitds${binary ? "" : ` — skipped: ${BUILDKITD_SKIP_REASON}`}`, () => {
  let registry: TestRegistry;
  let multiArchBase: string;
  const stops: Array<() => Promise<void>> = [];

  beforeAll(async () => {
    registry = await startRegistry();
    stops.push(() => registry.stop());
    multiArchBase = await pushMultiArchBusybox(registry.host);
    // Before any daemon starts: buildkitd lists the platforms it can run (emulated arm64 among them) at startup.
    await ensureArm64Emulation();
  });
  afterAll(async () => {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
  });

  /** Two fresh daemons (empty state), amd64 pinned to one and arm64 to the other. */
  async function pinnedPair(): Promise<{ amdBox: TestBuildkitd; armBox: TestBuildkitd; endpoints: Array<{ host: string; platforms: Architecture[] }> }> {
    const [amdBox, armBox] = await Promise.all([
      startBuildkitd({ insecureRegistries: [registry.host] }),
      startBuildkitd({ insecureRegistries: [registry.host] }),
    ]);
    stops.push(
      () => amdBox.stop(),
      () => armBox.stop(),
    );
    return {
      amdBox,
      armBox,
      endpoints: [
        { host: amdBox.unixAddress, platforms: [AMD64] },
        { host: armBox.unixAddress, platforms: [ARM64] },
      ],
    };
  }

  it("cacheTo: every group's cache is kept under its own ref, and fresh buildkitds importing them run the RUN step of neither platform (the first build, with no cache yet, warns)", async () => {
    const marker = uniqueName("kiln-split-cache");
    const image = Image.fromBase(multiArchBase, { registry: registry.host, name: uniqueName("kiln-bk-split-cache"), platform: [AMD64, ARM64] }).withCommands(
      `uname -m > /arch.txt && echo ${marker}`,
    );
    const first = await pinnedPair();
    // The first build also asks for the cache, which nobody has exported yet: a miss and one warning per group (naming
    // its own ref and the plain one, neither found), not a failure.
    const firstEvents = collector();
    await new BuildKitImageBuilder({ endpoints: first.endpoints, cacheFrom: true, cacheTo: true }).buildImage(image, { onEvent: firstEvents.onEvent });
    const cacheRef = defaultCacheRef(image)!;
    for (const platform of [AMD64, ARM64]) {
      expect(
        firstEvents.of("warning").filter((e) => e.message.includes(`could not import the build cache ${groupCacheRef(cacheRef, [platform])} or ${cacheRef} `)),
      ).toHaveLength(1);
    }
    expect(firstEvents.of("warning").filter((e) => e.message.includes("could not import the build cache"))).toHaveLength(2);

    // Each group's export survived the other's: one cache manifest per platform group, and they differ.
    const client = new RegistryClient();
    const exported: string[] = [];
    for (const platform of [AMD64, ARM64]) {
      const head = await client.headManifest(groupCacheRef(cacheRef, [platform]));
      expect(head, `no cache exported for ${platform}`).not.toBeNull();
      exported.push(head!.digest);
    }
    expect(new Set(exported).size).toBe(2);

    // Two new daemons with empty state import the caches: the RUN step of each platform comes from them.
    const second = await pinnedPair();
    const c = collector();
    await new BuildKitImageBuilder({ endpoints: second.endpoints, cacheFrom: true }).buildImage(image, { force: true, onEvent: c.onEvent });
    expectRunStepCached(c, marker, "the cache");
    expect(c.of("build.log").filter((e) => e.line.includes(marker))).toEqual([]);
  });

  it("a split build imports the cache a single-endpoint build exported under the ref as given: the RUN step of neither platform runs, and no import warns", async () => {
    const marker = uniqueName("kiln-split-plain-cache");
    const image = Image.fromBase(multiArchBase, { registry: registry.host, name: uniqueName("kiln-bk-split-plain"), platform: [AMD64, ARM64] }).withCommands(
      `uname -m > /arch.txt && echo ${marker}`,
    );
    // One daemon builds both platforms (arm64 under qemu) and exports the plain ref, as CI or a run that fell back to one endpoint would.
    const single = await startBuildkitd({ insecureRegistries: [registry.host] });
    stops.push(() => single.stop());
    await new BuildKitImageBuilder({ endpoints: [single.unixAddress], cacheTo: true }).buildImage(image);
    const cacheRef = defaultCacheRef(image)!;
    expect(await new RegistryClient().headManifest(cacheRef), "the single-endpoint build exported no cache").not.toBeNull();

    // A split build on two fresh daemons: no group ref exists yet, so every cached step comes from the plain ref.
    const split = await pinnedPair();
    const c = collector();
    await new BuildKitImageBuilder({ endpoints: split.endpoints, cacheFrom: true }).buildImage(image, { force: true, onEvent: c.onEvent });
    expectRunStepCached(c, marker, "the single-endpoint build's cache");
    expect(c.of("build.log").filter((e) => e.line.includes(marker))).toEqual([]);
    // The group refs are missing, but each group had a cache: a missing half of the pair is no warning.
    expect(c.of("warning").filter((e) => e.message.includes("could not import the build cache"))).toEqual([]);
  });

  it("a group that fails cancels the other group's in-flight Solve: its error (platform and endpoint) is the build's, promptly, and nothing is tagged", async () => {
    const { amdBox, armBox, endpoints } = await pinnedPair();
    const marker = uniqueName("kiln-split-fail");
    // arm64 fails after a few seconds; amd64 would run for two minutes.
    const image = Image.fromBase(multiArchBase, { registry: registry.host, name: uniqueName("kiln-bk-split-fail"), platform: [AMD64, ARM64] }).withCommands(
      `echo ${marker}-started; if [ "$(uname -m)" = aarch64 ]; then sleep 8; echo ${marker}-arm64-fails; exit 3; fi; sleep 120; echo ${marker}-finished`,
    );
    const c = collector();
    let amd64StartedAt: number | undefined;
    const started = Date.now();
    const error = (await new BuildKitImageBuilder({ endpoints })
      .buildImage(image, {
        onEvent: (e) => {
          c.onEvent(e);
          if (e.type === "build.log" && e.platform === AMD64 && e.line.includes(`${marker}-started`)) amd64StartedAt ??= Date.now();
        },
      })
      .catch((e: unknown) => e)) as Error & { details: { logTail: string[] } };
    const failedAt = Date.now();

    // The failing group's error, naming its platform and its endpoint.
    expect(BuildFailedError.isInstance(error), String(error)).toBe(true);
    expect(error.message).toContain(ARM64);
    expect(error.message).toContain(armBox.unixAddress);
    expect(error.message).not.toContain(AMD64);
    expect(error.details.logTail.join("\n")).toContain(`${marker}-arm64-fails`);
    // amd64's step was running when arm64 failed, and the build did not wait for it to finish.
    expect(amd64StartedAt, "amd64's RUN step never started: the test's precondition failed").toBeDefined();
    expect(amd64StartedAt!).toBeLessThan(failedAt);
    expect(failedAt - started).toBeLessThan(90_000);
    expect(c.of("build.log").some((e) => e.line.includes(`${marker}-finished`))).toBe(false);

    // The amd64 daemon stopped the step: no process of it is left (deadline 20 s).
    const deadline = Date.now() + 20_000;
    while (processesMentioning(`${marker}-finished`).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
    expect(processesMentioning(`${marker}-finished`)).toEqual([]);
    // The amd64 daemon's Solve is gone: it builds the next image at once.
    const next = Image.fromBase(multiArchBase, { registry: registry.host, name: uniqueName("kiln-bk-split-after-fail"), platform: [AMD64] }).withCommands(
      "uname -m > /arch.txt",
    );
    await new BuildKitImageBuilder({ endpoints: [amdBox.unixAddress] }).buildImage(next, {});

    // Nothing was tagged: no index under the image's tag, no tag at all in its repository.
    expect(await new RegistryClient().headManifest(image.uri)).toBeNull();
    const tags = await fetch(`http://${registry.host}/v2/${image.name}/tags/list`, { signal: AbortSignal.timeout(10_000) });
    const listed = tags.ok ? (((await tags.json()) as { tags: string[] | null }).tags ?? []) : [];
    expect(listed).toEqual([]);
    expect(c.of("push.done")).toEqual([]);
  });
});

/** Pids of the processes on this host whose command line mentions `text` (the daemons' step containers run as our children's children). */
function processesMentioning(text: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, "utf8").includes(text)) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}
