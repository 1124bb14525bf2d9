/**
 * Engine faults on a THROW-AWAY dockerd (own socket, roots and bridge; the machine's daemon is never
 * touched): stopped before a build, SIGKILLed in the middle of one, restarted; a base image that does
 * not exist. Each outcome is a typed error with a hint, within a bound the test asserts; afterwards no
 * container is left on that daemon.
 */
import { BuildFailedError, CancelledError, DaemonUnavailableError, Image, KilnError } from "@kiln/core";
import { ensureBusyboxImage, startThrowawayDaemon, uniqueName, type ThrowawayDaemon } from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DockerImageBuilder } from "../../src/builder.js";
import { collector } from "../helpers.js";

let daemon: ThrowawayDaemon;
let busybox: string;

beforeAll(async () => {
  busybox = await ensureBusyboxImage();
  daemon = await startThrowawayDaemon();
  await daemon.loadImage(busybox);
}, 180_000);
afterAll(async () => {
  await daemon?.stop();
}, 120_000);

const builder = () => new DockerImageBuilder({ env: { ...process.env, ...daemon.env }, buildkit: false });
const localImage = (command: string) => Image.fromBase(busybox, { name: uniqueName("kiln-rel-engine") }).withCommands(command);

async function timed<T>(fn: () => Promise<T>): Promise<{ value?: T; error?: unknown; ms: number }> {
  const started = Date.now();
  try {
    return { value: await fn(), ms: Date.now() - started };
  } catch (error) {
    return { error, ms: Date.now() - started };
  }
}

describe("the Docker daemon goes away", () => {
  it("stopped before the build: DaemonUnavailableError naming the socket, with a hint, in well under a second", async () => {
    await daemon.halt("SIGTERM");
    const outcome = await timed(() => builder().buildImage(localImage("echo stopped > /x"), {}));
    expect(DaemonUnavailableError.isInstance(outcome.error), String(outcome.error)).toBe(true);
    const error = outcome.error as KilnError;
    expect(error.message).toContain(daemon.socketPath);
    expect(error.hint).toMatch(/Start the Docker daemon|DOCKER_HOST/);
    expect(outcome.ms).toBeLessThan(2_000);
  });

  it("restarted: the next build works", async () => {
    await daemon.restart();
    const outcome = await timed(() => builder().buildImage(localImage("echo restarted > /x"), {}));
    expect(outcome.error).toBeUndefined();
    expect(outcome.value?.uri).toMatch(/^kiln-rel-engine-/);
  });

  it("SIGKILLed mid-build (during a slow RUN): a typed error, no hang; after a restart the next build works (the killed step container outlives dockerd — known gap)", async () => {
    const c = collector();
    let killedAt = 0;
    const running = timed(() =>
      builder().buildImage(localImage("echo start && sleep 60"), {
        onEvent: (e) => {
          c.onEvent(e);
          if (!killedAt && e.type === "build.log" && /start/.test(e.line)) {
            killedAt = Date.now();
            void daemon.halt("SIGKILL");
          }
        },
      }),
    );
    const outcome = await running;
    expect(killedAt, `events: ${JSON.stringify(c.events.slice(-5))}`).toBeGreaterThan(0);
    expect(KilnError.isInstance(outcome.error), String(outcome.error)).toBe(true);
    expect((outcome.error as KilnError).hint).toBeTruthy();
    expect(DaemonUnavailableError.isInstance(outcome.error) || BuildFailedError.isInstance(outcome.error)).toBe(true);
    expect(Date.now() - killedAt).toBeLessThan(10_000);

    await daemon.restart();
    const after = await timed(() => builder().buildImage(localImage("echo after-crash > /x"), {}));
    expect(after.error).toBeUndefined();
    // KNOWN GAP (docs/reliability.md): the killed build's step container outlives dockerd. When
    // containerd survived the kill, the restarted dockerd re-adopts it still running (until its
    // command ends); otherwise it stays behind stopped — dockerd died before its forcerm, and Kiln's
    // request died with it. Not Kiln's to control; counted here and removed by the test.
    const leftovers = await daemon.containers();
    const stillRunning = (await daemon.docker(["ps", "-q"])).split("\n").filter(Boolean);
    console.info(`[reliability] containers left by a dockerd SIGKILL mid-build: ${leftovers.length} (${stillRunning.length} running)`);
    if (leftovers.length) await daemon.docker(["rm", "-f", ...leftovers]);
    expect(await daemon.containers()).toEqual([]);
  });

  it("an AbortSignal during a slow RUN: CancelledError within seconds, and the build container is removed", async () => {
    const before = new Set(await daemon.containers());
    const controller = new AbortController();
    let abortedAt = 0;
    const outcome = await timed(() =>
      builder().buildImage(localImage("echo go && sleep 60"), {
        signal: controller.signal,
        onEvent: (e) => {
          if (!abortedAt && e.type === "build.log" && /go/.test(e.line)) {
            abortedAt = Date.now();
            controller.abort();
          }
        },
      }),
    );
    expect(abortedAt).toBeGreaterThan(0);
    expect(CancelledError.isInstance(outcome.error), String(outcome.error)).toBe(true);
    expect(Date.now() - abortedAt).toBeLessThan(5_000);
    const deadline = Date.now() + 30_000;
    const ours = async () => (await daemon.containers()).filter((id) => !before.has(id));
    let left = await ours();
    while (left.length > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 1_000));
      left = await ours();
    }
    expect(left).toEqual([]);
  });
});

describe("a base image that does not exist", () => {
  it("fails fast with a typed error naming the image (the daemon has no internet to pull from)", async () => {
    const before = new Set(await daemon.containers());
    const missing = `kiln-test/${uniqueName("no-such-base")}:1`;
    const image = Image.fromBase(missing, { name: uniqueName("kiln-rel-missing") }).withCommands("true");
    const outcome = await timed(() => builder().buildImage(image, {}));
    expect(BuildFailedError.isInstance(outcome.error), String(outcome.error)).toBe(true);
    const error = outcome.error as KilnError;
    expect(error.message).toContain(missing.split(":")[0]);
    expect(error.hint).toBeTruthy();
    expect(outcome.ms).toBeLessThan(30_000);
    expect((await daemon.containers()).filter((id) => !before.has(id))).toEqual([]);
  });
});
