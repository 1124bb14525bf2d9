/**
 * The checkers honour `imageExists(..., { signal })`: against a real registry behind the fault
 * proxy that never answers the manifest HEAD, an abort rejects the check at once with a
 * CancelledError (no "absent"), and no retry follows. Without the signal reaching the request the
 * call could not end before the client's 30 s idle timeout.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { CancelledError } from "@kiln/core";
import { DockerHubImageChecker, RegistryImageChecker } from "../src/index.js";
import { startFaultProxy, type FaultProxy } from "../../test-utils/src/faultProxy.js";
import { pushTestImage, startRegistry, type TestRegistry } from "../../test-utils/src/registry.js";

let registry: TestRegistry;
let proxy: FaultProxy;

beforeAll(async () => {
  registry = await startRegistry({ auth: "none" });
  await pushTestImage(registry, "library/app", "v1", "docker-manifest-list");
  proxy = await startFaultProxy(registry.url);
});
afterAll(async () => {
  await proxy?.stop();
  await registry?.stop();
});
beforeEach(() => {
  proxy.setPlan({ faults: [], match: ({ method, path }) => method === "HEAD" && path.includes("/manifests/"), then: { kind: "hang" } });
  proxy.requests.length = 0;
});

// Patient timeouts: only the abort can end the hanging request within the test's bounds.
const clientOptions = { useDockerConfig: false, retry: { retries: 2, baseDelayMs: 10 }, timeouts: { connectMs: 5_000, idleMs: 30_000, totalMs: 60_000 } };

async function abortWhileHanging(check: (signal: AbortSignal) => Promise<string | null>): Promise<{ error: unknown; afterMs: number }> {
  const controller = new AbortController();
  const pending = check(controller.signal);
  const deadline = Date.now() + 5_000;
  while (proxy.requests.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(proxy.requests).toHaveLength(1);
  const abortedAt = Date.now();
  controller.abort();
  try {
    const answer = await pending;
    throw new Error(`expected a cancellation, got ${JSON.stringify(answer)}`);
  } catch (error) {
    return { error, afterMs: Date.now() - abortedAt };
  }
}

describe("checkers pass their signal to the registry request", () => {
  it("RegistryImageChecker.imageExists: aborted mid-request → CancelledError within 1 s, no retry", async () => {
    const checker = new RegistryImageChecker(clientOptions);
    const { error, afterMs } = await abortWhileHanging((signal) => checker.imageExists(`${proxy.host}/library/app`, "v1", ["linux/amd64"], { signal }));
    expect(CancelledError.isInstance(error)).toBe(true);
    expect(afterMs).toBeLessThan(1_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(proxy.requests).toHaveLength(1);
  });

  it("DockerHubImageChecker.imageExists: aborted mid-request → CancelledError within 1 s, no retry", async () => {
    const checker = new DockerHubImageChecker({ registryUrl: proxy.url, clientOptions });
    const { error, afterMs } = await abortWhileHanging((signal) => checker.imageExists("app", "v1", ["linux/amd64"], { signal }));
    expect(CancelledError.isInstance(error)).toBe(true);
    expect(afterMs).toBeLessThan(1_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(proxy.requests).toHaveLength(1);
  });

  it("without a signal the same checker still answers (older callers keep working)", async () => {
    proxy.setPlan([]);
    const checker = new RegistryImageChecker(clientOptions);
    expect(await checker.imageExists(`${proxy.host}/library/app`, "v1", ["linux/amd64", "linux/arm64"])).toBe(`${proxy.host}/library/app:v1`);
  });
});
