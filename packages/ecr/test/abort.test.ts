/**
 * EcrImageChecker honours `imageExists(..., { signal })` over the real SDK path (ECRClient →
 * signing → HTTP → the wire-level fake ECR): the signal reaches `send(command, { abortSignal })`,
 * so an abort while BatchGetImage (or the config blob download) hangs rejects at once with a
 * CancelledError, the SDK makes no further attempt, and the fake sees the connection close.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { CancelledError } from "@kiln/core";
import { EcrImageChecker } from "../src/checker.js";
import { FakeEcr } from "./fake-ecr.js";
import { DOCKER_MANIFEST, singleArch } from "./manifests.js";

const ACCOUNT = "123456789012";
const HOST = `${ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com`;
const TAG = "0123456789abcdef0123456789abcdef";

let ecr: FakeEcr;

beforeAll(async () => {
  ecr = await new FakeEcr().start();
  const single = singleArch({ os: "linux", architecture: "arm64" });
  ecr.addBlob(single.config);
  ecr.addImage(ACCOUNT, "single", TAG, { manifest: single.manifest, mediaType: DOCKER_MANIFEST });
});
afterAll(async () => {
  await ecr.stop();
});
beforeEach(() => {
  ecr.hang.clear();
  ecr.requests.length = 0;
  ecr.blobRequests.length = 0;
});

const checker = () =>
  new EcrImageChecker({ endpoint: ecr.url, credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "s" }, maxAttempts: 4 });

async function until(condition: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function cancelled(pending: Promise<unknown>, abort: () => void): Promise<number> {
  const abortedAt = Date.now();
  abort();
  try {
    const answer = await pending;
    throw new Error(`expected a cancellation, got ${JSON.stringify(answer)}`);
  } catch (error) {
    expect(CancelledError.isInstance(error)).toBe(true);
    return Date.now() - abortedAt;
  }
}

describe("EcrImageChecker and the AbortSignal", () => {
  it("aborting while BatchGetImage hangs: CancelledError within 1 s, connection closed, no retry", async () => {
    ecr.hang.add("BatchGetImage");
    const c = checker();
    const controller = new AbortController();
    const closedBefore = ecr.connections.closed;
    const pending = c.imageExists(`${HOST}/single`, TAG, ["linux/arm64"], { signal: controller.signal });
    await until(() => ecr.calls("BatchGetImage").length === 1);
    expect(await cancelled(pending, () => controller.abort())).toBeLessThan(1_000);
    // The SDK destroyed the request: the fake sees its connection close.
    await until(() => ecr.connections.closed > closedBefore, 1_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(ecr.calls("BatchGetImage")).toHaveLength(1);
    c.destroy();
  });

  it("aborting while the config blob download hangs: CancelledError within 1 s, connection closed", async () => {
    ecr.hang.add("blob");
    const c = checker();
    const controller = new AbortController();
    const pending = c.imageExists(`${HOST}/single`, TAG, ["linux/arm64"], { signal: controller.signal });
    await until(() => ecr.blobRequests.length === 1);
    const closedBefore = ecr.connections.closed;
    expect(await cancelled(pending, () => controller.abort())).toBeLessThan(1_000);
    await until(() => ecr.connections.closed > closedBefore, 1_000);
    expect(ecr.blobRequests).toHaveLength(1);
    c.destroy();
  });

  it("without a signal it answers as before", async () => {
    const c = checker();
    expect(await c.imageExists(`${HOST}/single`, TAG, ["linux/arm64"])).toBe(`${HOST}/single:${TAG}`);
    c.destroy();
  });
});
