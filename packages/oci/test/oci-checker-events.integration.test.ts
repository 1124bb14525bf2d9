/**
 * The oci registry checker reports what its check waits for, as core's checkers do: a fault proxy in
 * front of a real registry answers the tag's HEAD with 429 (Retry-After: 1), then 503; the engine's
 * `onEvent` given to `imageExists` hears registry.ratelimit and registry.retry for each wait, and the
 * image is still found.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { RegistryClient, type BuildEvent } from "@kiln/core";
import { pushTestImage, startFaultProxy, startRegistry, type FaultProxy, type TestRegistry } from "@kiln/test-utils";
import { OciRegistryImageChecker } from "../src/index.js";

let registry: TestRegistry;
let proxy: FaultProxy;

const isTagHead = ({ method, path }: { method: string; path: string }) => method === "HEAD" && path.endsWith("/manifests/v1");
const rateLimitedThenUnavailable = () =>
  proxy.setPlan({
    faults: [
      { kind: "status", status: 429, retryAfter: "1" },
      { kind: "status", status: 503 },
    ],
    match: isTagHead,
  });
const registryEvents = (events: BuildEvent[]) => events.filter((e) => e.type === "registry.retry" || e.type === "registry.ratelimit");
/** A client with no listener of its own: the events can only come from the check's onEvent. */
const quietClient = () => new RegistryClient({ useDockerConfig: false, retry: { retries: 3, baseDelayMs: 20, maxDelayMs: 100 } });

beforeAll(async () => {
  registry = await startRegistry();
  await pushTestImage(registry, "events/img", "v1", "docker-v2");
  proxy = await startFaultProxy(registry.url);
}, 120_000);
afterAll(async () => {
  await proxy?.stop();
  await registry?.stop();
});
beforeEach(() => proxy.setPlan([]));

function expectRateLimitThenRetry(events: BuildEvent[]): void {
  const url = `${proxy.url}/v2/events/img/manifests/v1`;
  expect(registryEvents(events)).toEqual([
    expect.objectContaining({ type: "registry.ratelimit", host: proxy.host, url, status: 429, retryAfterSeconds: 1, attempt: 1 }),
    expect.objectContaining({ type: "registry.retry", host: proxy.host, url, status: 429, attempt: 1, reason: "HTTP 429" }),
    expect.objectContaining({ type: "registry.retry", host: proxy.host, url, status: 503, attempt: 2, reason: "HTTP 503" }),
  ]);
}

describe("OciRegistryImageChecker forwards onEvent", () => {
  it("imageExists(…, { onEvent }): 429 then 503 on the tag's HEAD — registry.ratelimit and registry.retry events, image found", async () => {
    rateLimitedThenUnavailable();
    const events: BuildEvent[] = [];
    const checker = new OciRegistryImageChecker(quietClient());
    const found = await checker.imageExists(`${proxy.host}/events/img`, "v1", ["linux/amd64"], { onEvent: (e) => events.push(e) });
    expect(found).toBe(`${proxy.host}/events/img:v1`);
    expectRateLimitThenRetry(events);
    expect(proxy.requests.filter(isTagHead)).toHaveLength(3);
  });
});
