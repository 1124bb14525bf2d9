// A split build (platforms pinned to different endpoints) whose group fails: unit test of the builder's
// orchestration with a stand-in for the pool's work (the real daemons are in
// split-platforms.integration.test.ts). The failure is reported only once the other group has wound
// down — or, should it never, after a bounded wait — and it is the failing group's own error.
import { BuildFailedError, CancelledError, Image, type Architecture } from "@kiln/core";
import { describe, expect, it } from "vitest";
import { BuildKitImageBuilder } from "../src/builder.js";

type Work = (client: unknown) => Promise<unknown>;
interface PoolLike {
  use(image: Image, platforms: readonly Architecture[], options: { signal?: AbortSignal }, work: Work): Promise<unknown>;
}

/** A builder over two pinned (never contacted) endpoints whose pool runs `group` instead of connecting. */
function splitBuilder(group: (platforms: readonly Architecture[], signal: AbortSignal) => Promise<unknown>): BuildKitImageBuilder {
  const builder = new BuildKitImageBuilder({
    endpoints: [
      { host: "unix:///nonexistent/amd.sock", platforms: ["linux/amd64"] },
      { host: "unix:///nonexistent/arm.sock", platforms: ["linux/arm64"] },
    ],
    projectDir: false,
  });
  const pool = (builder as unknown as { setup: { pool: PoolLike } }).setup.pool;
  pool.use = (_image, platforms, options) => group(platforms, options.signal!);
  return builder;
}

const splitImage = () =>
  Image.fromBase("127.0.0.1:9/kiln-base/busybox:1.35", {
    registry: "127.0.0.1:9",
    name: "kiln-split-cancel",
    platform: ["linux/amd64", "linux/arm64"],
  }).withCommands("true");

const armFails = () => new BuildFailedError("Build of x (linux/arm64) on BuildKit at unix:///nonexistent/arm.sock failed: exit code: 3");

describe("split build: a failing group", () => {
  it("cancels the other group and reports its own error only once the other group has settled", async () => {
    let amdSettled = false;
    let amdCancelled = false;
    const builder = splitBuilder(async (platforms, signal) => {
      if (platforms.includes("linux/arm64")) {
        await new Promise((r) => setTimeout(r, 20));
        throw armFails();
      }
      // amd64: in flight until cancelled, then takes a moment to wind down (the Solve's cancellation).
      await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
      amdCancelled = true;
      await new Promise((r) => setTimeout(r, 300));
      amdSettled = true;
      throw new CancelledError("Build of x (linux/amd64) cancelled");
    });
    const error = (await builder.buildImage(splitImage(), {}).catch((e: unknown) => e)) as Error;
    expect(BuildFailedError.isInstance(error), String(error)).toBe(true);
    expect(error.message).toContain("linux/arm64");
    expect(amdCancelled).toBe(true);
    expect(amdSettled, "the build failed while the amd64 group was still winding down").toBe(true);
  });

  it("does not wait without end for a group that never settles", async () => {
    const builder = splitBuilder(async (platforms) => {
      if (platforms.includes("linux/arm64")) throw armFails();
      return new Promise(() => undefined); // ignores its signal
    });
    const started = Date.now();
    const error = (await builder.buildImage(splitImage(), {}).catch((e: unknown) => e)) as Error;
    expect(BuildFailedError.isInstance(error), String(error)).toBe(true);
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  it("an abort of the build's own signal is a CancelledError, not a group's error", async () => {
    const controller = new AbortController();
    const builder = splitBuilder(async (_platforms, signal) => {
      await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
      throw new BuildFailedError("a group's failure caused by the cancellation");
    });
    setTimeout(() => controller.abort(), 20);
    const error = (await builder.buildImage(splitImage(), { signal: controller.signal }).catch((e: unknown) => e)) as Error;
    expect(CancelledError.isInstance(error), String(error)).toBe(true);
  });
});
