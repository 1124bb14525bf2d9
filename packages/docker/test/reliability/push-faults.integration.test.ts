/**
 * Registry faults during a real push: the Docker daemon pushes layers and the manifest through a
 * fault-injecting proxy in front of the real registry (Basic auth; Bearer for the expired-token
 * case). For every fault the build either completes — and the registry, asked directly by digest,
 * holds exactly what Kiln reported — or fails with a typed KilnError carrying a hint. Never a
 * reported success for an image the registry does not hold. Every case is bounded by a deadline.
 */
import { AuthError, CancelledError, Image, KilnError, PushFailedError, RateLimitError, RegistryClient } from "@kiln/core";
import {
  DockerCleanup,
  ensureBusyboxImage,
  pushSteps,
  startPushFaultProxy,
  startRegistry,
  uniqueName,
  type PushFault,
  type PushFaultPlan,
  type PushFaultProxy,
  type TestRegistry,
} from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DockerImageBuilder } from "../../src/builder.js";
import { collector } from "../helpers.js";

const DEADLINE_MS = 60_000;
let busybox: string;
let registry: TestRegistry;
let proxy: PushFaultProxy;
const cleanup = new DockerCleanup();

beforeAll(async () => {
  busybox = await ensureBusyboxImage();
  registry = await startRegistry({ auth: "basic" });
  proxy = await startPushFaultProxy(registry.url);
});
afterAll(async () => {
  await cleanup.run();
  await proxy?.stop();
  await registry?.stop();
});

interface Outcome {
  result?: { uri: string | null; digest?: string };
  error?: unknown;
  elapsedMs: number;
  /** What the registry itself serves under the image's tag (asked directly, not through the proxy). */
  held: string | null;
  /** Kiln's own push retries (push.progress events on the "retry" pseudo-layer). */
  pushRetries: number;
  name: string;
  tag: string;
}

/** Builds and pushes a fresh one-layer image through `via` under `plan`; asks the registry afterwards. */
async function pushThrough(via: PushFaultProxy, target: TestRegistry, plan: PushFaultPlan, options: { signal?: AbortSignal } = {}): Promise<Outcome> {
  const name = uniqueName("kiln-rel-push");
  const image = Image.fromBase(busybox, { registry: via.host, name }).withCommands(`echo ${name} > /id.txt`);
  cleanup.image(image.uri);
  const builder = new DockerImageBuilder({
    env: { ...process.env, DOCKER_CONFIG: "/nonexistent" },
    credentials: { [via.host]: target.credentials! },
    buildkit: false,
  });
  via.setPlan(plan);
  via.requests.length = 0;
  const c = collector();
  const started = Date.now();
  let result: Outcome["result"];
  let error: unknown;
  try {
    result = await withDeadline(builder.buildImage(image, { onEvent: c.onEvent, signal: options.signal }), DEADLINE_MS);
  } catch (e) {
    error = e;
  }
  const elapsedMs = Date.now() - started;
  via.setPlan([]);
  const direct = new RegistryClient({ useDockerConfig: false, credentials: { [target.host]: target.credentials! } });
  const held = (await direct.headManifest(`${target.host}/${name}:${image.tag}`))?.digest ?? null;
  const pushRetries = c.of("push.progress").filter((e) => e.layer === "retry").length;
  return { result, error, elapsedMs, held, pushRetries, name, tag: image.tag };
}

function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms (hang)`)), ms))),
  ]);
}

/** The invariant every case keeps: success ⇒ the registry holds that digest; failure ⇒ typed + hint. */
function expectSound(outcome: Outcome): void {
  if (outcome.error === undefined) {
    expect(outcome.result?.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(outcome.held).toBe(outcome.result!.digest);
  } else {
    expect(KilnError.isInstance(outcome.error), String(outcome.error)).toBe(true);
    expect((outcome.error as KilnError).hint).toBeTruthy();
  }
  expect(outcome.elapsedMs).toBeLessThan(DEADLINE_MS);
}

const faulted = (kind: PushFault["kind"]) => proxy.requests.filter((r) => r.fault === kind).length;

describe("push through a faulty registry (real daemon, real registry)", () => {
  it("baseline: a clean push through the proxy is held by the registry under the reported digest", async () => {
    const outcome = await pushThrough(proxy, registry, { faults: [] });
    expectSound(outcome);
    expect(outcome.error).toBeUndefined();
    expect(proxy.requests.some(pushSteps.manifestPut)).toBe(true);
    expect(proxy.requests.some(pushSteps.uploadData)).toBe(true);
  });

  it("429 with Retry-After on the layer upload: the daemon gives up on a 429, Kiln retries the push, it completes", async () => {
    const outcome = await pushThrough(proxy, registry, { faults: [{ kind: "status", status: 429, retryAfter: "1" }], match: pushSteps.uploadStart });
    expectSound(outcome);
    expect(faulted("status")).toBe(1);
    expect(outcome.error).toBeUndefined();
    expect(outcome.pushRetries).toBe(1); // the refused push and Kiln's retry
  });

  it("429 without Retry-After, then 500/502/503 on the layer upload: retried, completes", async () => {
    const outcome = await pushThrough(proxy, registry, {
      faults: [
        { kind: "status", status: 429 },
        { kind: "status", status: 500 },
        { kind: "status", status: 502 },
        { kind: "status", status: 503 },
      ],
      match: pushSteps.uploadStart,
    });
    expectSound(outcome);
    expect(faulted("status")).toBe(4);
    expect(outcome.error).toBeUndefined();
  });

  it("a connection reset in the middle of a layer upload: retried, completes", async () => {
    const outcome = await pushThrough(proxy, registry, { faults: [{ kind: "reset-mid-upload" }], match: pushSteps.uploadData });
    expectSound(outcome);
    expect(faulted("reset-mid-upload")).toBe(1);
    expect(outcome.error).toBeUndefined();
  });

  it("a registry that rate-limits every upload: a bounded number of push attempts, then RateLimitError with a hint; no manifest", async () => {
    const outcome = await pushThrough(proxy, registry, { faults: [], match: pushSteps.uploadStart, then: { kind: "status", status: 429 } });
    expectSound(outcome);
    expect(RateLimitError.isInstance(outcome.error)).toBe(true);
    expect((outcome.error as KilnError).hint).toMatch(/wait/);
    expect(outcome.held).toBeNull();
    expect(proxy.requests.filter(pushSteps.manifestPut)).toHaveLength(0);
    expect(outcome.pushRetries).toBe(2); // the first push and two retries, then it gives up
    expect(faulted("status")).toBeGreaterThanOrEqual(3);
  });

  it("503 on every manifest PUT: the push is reported failed (PushFailedError) and the registry holds no such tag", async () => {
    const outcome = await pushThrough(proxy, registry, { faults: [], match: pushSteps.manifestPut, then: { kind: "status", status: 503 } });
    expectSound(outcome);
    expect(PushFailedError.isInstance(outcome.error)).toBe(true);
    expect(outcome.held).toBeNull();
  });

  it("429 on the manifest PUT, then a clean answer: completes or fails typed — never a false success", async () => {
    const outcome = await pushThrough(proxy, registry, { faults: [{ kind: "status", status: 429, retryAfter: "1" }], match: pushSteps.manifestPut });
    expectSound(outcome);
  });

  it("the manifest PUT accepted but the answer reset mid-body: never reported done without the registry holding it", async () => {
    const outcome = await pushThrough(proxy, registry, { faults: [{ kind: "reset-mid-body" }], match: pushSteps.manifestPut });
    expectSound(outcome);
    expect(faulted("reset-mid-body")).toBe(1);
  });

  it("the manifest PUT answered with a truncated or invalid-JSON body: the reported digest is the one the registry holds", async () => {
    for (const kind of ["truncate", "invalid-json"] as const) {
      const outcome = await pushThrough(proxy, registry, { faults: [{ kind }], match: pushSteps.manifestPut });
      expectSound(outcome);
    }
  });

  it("a slow drip on every blob check: slower, but completes and is held", async () => {
    const outcome = await pushThrough(proxy, registry, { faults: [], match: pushSteps.blobHead, then: { kind: "drip", intervalMs: 300 } });
    expectSound(outcome);
    expect(outcome.error).toBeUndefined();
    expect(faulted("drip")).toBeGreaterThan(0);
  });

  it("a registry that never answers the manifest PUT: the caller's AbortSignal ends the push (CancelledError), nothing reported pushed", async () => {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 8_000);
    const outcome = await pushThrough(proxy, registry, { faults: [], match: pushSteps.manifestPut, then: { kind: "hang" } }, { signal: controller.signal });
    clearTimeout(timer);
    expect(CancelledError.isInstance(outcome.error), String(outcome.error)).toBe(true);
    expect(outcome.result).toBeUndefined();
    expect(outcome.held).toBeNull();
    expect(outcome.elapsedMs).toBeLessThan(20_000);
  });

  it("a registry that never answers the manifest PUT, no caller signal: the push idle timeout gives up with a PushFailedError + hint", async () => {
    const saved = process.env.KILN_DOCKER_PUSH_IDLE_TIMEOUT_MS;
    process.env.KILN_DOCKER_PUSH_IDLE_TIMEOUT_MS = "3000";
    let outcome: Outcome;
    try {
      outcome = await pushThrough(proxy, registry, { faults: [], match: pushSteps.manifestPut, then: { kind: "hang" } });
    } finally {
      if (saved === undefined) delete process.env.KILN_DOCKER_PUSH_IDLE_TIMEOUT_MS;
      else process.env.KILN_DOCKER_PUSH_IDLE_TIMEOUT_MS = saved;
    }
    expectSound(outcome);
    expect(PushFailedError.isInstance(outcome.error), String(outcome.error)).toBe(true);
    expect((outcome.error as KilnError).message).toMatch(/no progress for 3 s/);
    expect((outcome.error as KilnError).hint).toMatch(/KILN_DOCKER_PUSH_IDLE_TIMEOUT_MS/);
    expect(outcome.result).toBeUndefined();
    expect(outcome.held).toBeNull();
    expect(outcome.pushRetries).toBe(0); // a hung registry is not retried (that would triple the wait)
    expect(outcome.elapsedMs).toBeLessThan(15_000);
    console.info(`[reliability] push idle timeout 3 s: gave up after ${outcome.elapsedMs} ms`);
  });
});

describe("Bearer token refused mid-push", () => {
  let bearer: TestRegistry;
  let bearerProxy: PushFaultProxy;
  beforeAll(async () => {
    bearer = await startRegistry({ auth: "bearer" });
    bearerProxy = await startPushFaultProxy(bearer.url);
  });
  afterAll(async () => {
    await bearerProxy?.stop();
    await bearer?.stop();
  });

  it("an upload answered 401 invalid_token (the token expired) after the push started: completes or AuthError, never a false success", async () => {
    const challenge = `Bearer realm="${bearer.tokenServer!.realm}",service="${bearer.tokenServer!.service}",error="invalid_token"`;
    const outcome = await pushThrough(bearerProxy, bearer, {
      faults: [{ kind: "status", status: 401, headers: { "www-authenticate": challenge } }],
      match: pushSteps.uploadData,
    });
    expectSound(outcome);
    if (outcome.error) expect(AuthError.isInstance(outcome.error) || PushFailedError.isInstance(outcome.error)).toBe(true);
    expect(bearerProxy.requests.filter((r) => r.status === 401 && r.fault === "status")).toHaveLength(1);
    expect(bearer.tokenServer!.requests.length).toBeGreaterThan(0);
  });
});
