/**
 * Cancellation gap (c) of issue #8: a check honours its AbortSignal — beyond what the conformance
 * suite of @kiln/core/testing proves for every checker (an already-aborted check sends nothing; an
 * abort mid-request rejects at once, closes the socket, retries nothing: test/testing.test.ts). A real registry (distribution
 * 2.8, Basic auth) sits behind the fault proxy, which hangs or drips; in front of the proxy a small
 * TCP relay counts the client's connections, so a test can prove the client's socket is really
 * closed on abort (not merely abandoned while it runs on to its own timeout). Also: an abort during
 * a Retry-After wait ends it at once with no further request, and runCheckers hands the signal to
 * checkers and abandons one that ignores it. An aborted check is a CancelledError — never "absent".
 */
import { EventEmitter } from "node:events";
import net from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { ImageCheckOptions } from "../src/builder.js";
import { digestOfFound, runCheckers, type NamedChecker } from "../src/checkers.js";
import { CancelledError, KilnError } from "../src/errors.js";
import type { BuildEvent } from "../src/events.js";
import type { Architecture } from "../src/layers.js";
import { checkImage } from "../src/registry/check.js";
import { RegistryClient } from "../src/registry/client.js";
import { startFaultProxy, type FaultProxy } from "../../test-utils/src/faultProxy.js";
import { pushTestImage, startRegistry, type TestRegistry } from "../../test-utils/src/registry.js";

/**
 * A TCP pass-through that tracks the client's connections: which ones carried a request since a
 * mark, and when each closes (the keep-alive pool's idle sockets are told apart from the one in use).
 */
interface ConnectionRelay {
  host: string;
  /**
   * Starts watching. `used()`: client connections that sent bytes since the mark (and whose last
   * request line matches `request`, when given); `allClosed(ms)`:
   * resolves once every one of them has closed, rejects after `ms` saying how many are still open.
   */
  mark(request?: RegExp): { used(): number; allClosed(ms: number): Promise<void> };
  stop(): Promise<void>;
}

async function startRelay(targetPort: number): Promise<ConnectionRelay> {
  const clients = new Set<net.Socket>();
  const everyClient: net.Socket[] = [];
  const lastSent = new WeakMap<net.Socket, number>();
  const lastRequestLine = new WeakMap<net.Socket, string>();
  const changes = new EventEmitter();
  let tick = 0;
  const server = net.createServer((client) => {
    clients.add(client);
    everyClient.push(client);
    const upstream = net.connect(targetPort, "127.0.0.1");
    client.on("data", (chunk: Buffer) => {
      lastSent.set(client, ++tick);
      const line = chunk.toString("latin1", 0, Math.min(chunk.length, 512)).split("\r\n")[0]!;
      if (/^[A-Z]+ \S+ HTTP\/1\.[01]$/.test(line)) lastRequestLine.set(client, line);
    });
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end);
    upstream.on("error", end);
    upstream.on("close", end);
    client.on("close", () => {
      clients.delete(client);
      end();
      changes.emit("close");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    mark(request) {
      const since = tick;
      const watched = new Set<net.Socket>();
      // Connections (pooled or new) that carried bytes after the mark.
      const collect = () => {
        for (const socket of everyClient) {
          if ((lastSent.get(socket) ?? 0) <= since) continue;
          if (request && !request.test(lastRequestLine.get(socket) ?? "")) continue;
          watched.add(socket);
        }
      };
      const stillOpen = () => {
        collect();
        return [...watched].filter((socket) => clients.has(socket)).length;
      };
      return {
        used: () => {
          collect();
          return watched.size;
        },
        allClosed: (ms) =>
          new Promise<void>((resolve, reject) => {
            if (stillOpen() === 0) return resolve();
            const timer = setTimeout(() => {
              changes.off("close", check);
              reject(new Error(`${stillOpen()} client connection(s) still open ${ms} ms after the abort`));
            }, ms);
            const check = () => {
              if (stillOpen() !== 0) return;
              clearTimeout(timer);
              changes.off("close", check);
              resolve();
            };
            changes.on("close", check);
          }),
      };
    },
    async stop() {
      for (const client of clients) client.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function until(condition: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Settles `promise` and returns its rejection with how long after `since` it came. */
async function rejection(promise: Promise<unknown>, since: () => number): Promise<{ error: unknown; afterMs: number }> {
  try {
    const value = await promise;
    throw new Error(`expected a rejection, got ${JSON.stringify(value)}`);
  } catch (error) {
    return { error, afterMs: Date.now() - since() };
  }
}

let registry: TestRegistry;
let proxy: FaultProxy;
let relay: ConnectionRelay;
let client: RegistryClient;
const events: BuildEvent[] = [];

const isManifest =
  (method: string) =>
  ({ method: m, path }: { method: string; path: string }) =>
    m === method && path.includes("/manifests/");

beforeAll(async () => {
  registry = await startRegistry({ auth: "basic" });
  await pushTestImage(registry, "kiln/multi", "v1", "oci-index-with-attestation");
  proxy = await startFaultProxy(registry.url);
  relay = await startRelay(Number(new URL(proxy.url).port));
});
afterAll(async () => {
  await relay?.stop();
  await proxy?.stop();
  await registry?.stop();
});

beforeEach(async () => {
  proxy.setPlan([]);
  events.length = 0;
  // Long per-attempt timeouts and a patient Retry-After: only the abort can end these requests early.
  client = new RegistryClient({
    useDockerConfig: false,
    credentials: { [relay.host]: registry.credentials! },
    retry: { retries: 3, baseDelayMs: 20, maxDelayMs: 100, maxRetryAfterMs: 60_000 },
    timeouts: { connectMs: 5_000, idleMs: 30_000, totalMs: 60_000 },
    onEvent: (e) => events.push(e),
  });
  // Learn the auth scheme first, so the plan's faults meet the authenticated request.
  expect((await checkImage(ref(), { client })).present).toBe(true);
  proxy.requests.length = 0;
});

const ref = () => `${relay.host}/kiln/multi:v1`;
const both = ["linux/amd64", "linux/arm64"];

describe("aborting a registry check mid-request", () => {
  it("a slow-drip body: the abort cuts the dripping GET short and closes its socket", async () => {
    proxy.setPlan({ faults: [], match: isManifest("GET"), then: { kind: "drip", intervalMs: 100, chunkBytes: 1 } });
    const controller = new AbortController();
    // Watch the connection carrying the manifest GET (the HEAD before it may leave an idle pooled socket).
    const watch = relay.mark(/^GET \S*\/manifests\//);
    const check = checkImage(ref(), { platforms: both, client, signal: controller.signal });
    await until(() => proxy.requests.some((r) => r.method === "GET"));
    // Let some of the body drip in, so the abort lands in the middle of the answer.
    await new Promise((resolve) => setTimeout(resolve, 350));
    expect(watch.used()).toBe(1);

    const abortedAt = Date.now();
    controller.abort();
    const { error, afterMs } = await rejection(check, () => abortedAt);
    expect(CancelledError.isInstance(error)).toBe(true);
    expect(afterMs).toBeLessThan(1_000);
    await watch.allClosed(1_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(proxy.requests.filter((r) => r.method === "GET")).toHaveLength(1);
  });

  it("an abort during a Retry-After wait ends the wait at once, with no further request", async () => {
    proxy.setPlan({ faults: [], match: isManifest("HEAD"), then: { kind: "status", status: 429, retryAfter: "30" } });
    const controller = new AbortController();
    const check = checkImage(ref(), { platforms: both, client, signal: controller.signal });
    // The client is now sleeping through the registry's 30 s Retry-After.
    await until(() => events.some((e) => e.type === "registry.retry"));
    const retry = events.find((e) => e.type === "registry.retry") as Extract<BuildEvent, { type: "registry.retry" }>;
    expect(retry.delayMs).toBe(30_000);

    const abortedAt = Date.now();
    controller.abort();
    const { error, afterMs } = await rejection(check, () => abortedAt);
    expect(CancelledError.isInstance(error)).toBe(true);
    expect(afterMs).toBeLessThan(200);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(proxy.requests).toHaveLength(1);
  });

  it("digestOfFound passes its signal to the HEAD: the request is aborted and its socket closed", async () => {
    proxy.setPlan({ faults: [], match: isManifest("HEAD"), then: { kind: "hang" } });
    const controller = new AbortController();
    const watch = relay.mark();
    // digestOfFound uses its own client, whose first (unauthenticated) HEAD meets the hang.
    const digest = digestOfFound(ref(), controller.signal);
    await until(() => proxy.requests.length === 1);
    expect(watch.used()).toBe(1);
    const abortedAt = Date.now();
    controller.abort();
    const { error, afterMs } = await rejection(digest, () => abortedAt);
    expect(CancelledError.isInstance(error)).toBe(true);
    expect(afterMs).toBeLessThan(1_000);
    await watch.allClosed(1_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(proxy.requests).toHaveLength(1);
  });
});

describe("runCheckers and the signal", () => {
  const platforms: Architecture[] = ["linux/amd64"];

  it("hands each checker the signal as its 4th argument", async () => {
    const seen: Array<ImageCheckOptions | undefined> = [];
    const checker: NamedChecker = {
      name: "recording",
      imageExists: async (_repository, _tag, _arch, options) => {
        seen.push(options);
        return null;
      },
    };
    const controller = new AbortController();
    const outcome = await runCheckers([checker], "example.test/app", "t1", platforms, { image: "example.test/app:t1", signal: controller.signal });
    expect(outcome.results).toEqual([{ checker: "recording", result: "absent" }]);
    expect(seen).toHaveLength(1);
    expect(seen[0]?.signal).toBe(controller.signal);
  });

  it("abandons a checker that ignores the signal: CancelledError at once, no 'absent', no next checker", async () => {
    const checkEvents: BuildEvent[] = [];
    let nextConsulted = false;
    const deaf: NamedChecker = { name: "deaf", imageExists: () => new Promise<string | null>(() => undefined) };
    const next: NamedChecker = {
      name: "next",
      imageExists: async () => {
        nextConsulted = true;
        return null;
      },
    };
    const controller = new AbortController();
    const running = runCheckers([deaf, next], "example.test/app", "t1", platforms, {
      image: "example.test/app:t1",
      signal: controller.signal,
      onEvent: (e) => checkEvents.push(e),
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const abortedAt = Date.now();
    controller.abort();
    const { error, afterMs } = await rejection(running, () => abortedAt);
    expect(CancelledError.isInstance(error)).toBe(true);
    expect(afterMs).toBeLessThan(200);
    expect(nextConsulted).toBe(false);
    expect(checkEvents.filter((e) => e.type === "check.result")).toHaveLength(0);
  });

  it("a checker that honours the signal (rejecting, or answering null late) still ends as CancelledError", async () => {
    const obedient: NamedChecker = {
      name: "obedient",
      imageExists: (_r, _t, _a, options) =>
        new Promise<string | null>((resolve) => {
          // The worst kind: on abort it resolves null ("absent"), which must not count as an answer.
          options?.signal?.addEventListener("abort", () => resolve(null), { once: true });
        }),
    };
    const controller = new AbortController();
    const running = runCheckers([obedient], "example.test/app", "t1", platforms, { image: "example.test/app:t1", signal: controller.signal });
    controller.abort();
    const { error } = await rejection(running, () => 0);
    expect(CancelledError.isInstance(error)).toBe(true);
  });

  it("the registry check through runCheckers: a hanging registry ends as CancelledError, never 'absent'", async () => {
    proxy.setPlan({ faults: [], match: isManifest("HEAD"), then: { kind: "hang" } });
    const registryChecker: NamedChecker = {
      name: "registry",
      imageExists: async (repository, tag, arch, options) => {
        const result = await checkImage(`${repository}:${tag}`, { platforms: arch ?? [], client, signal: options?.signal });
        return result.present ? `${repository}:${tag}` : null;
      },
    };
    const checkEvents: BuildEvent[] = [];
    const controller = new AbortController();
    const watch = relay.mark();
    const running = runCheckers([registryChecker], `${relay.host}/kiln/multi`, "v1", ["linux/amd64", "linux/arm64"], {
      image: ref(),
      signal: controller.signal,
      onEvent: (e) => checkEvents.push(e),
    });
    await until(() => proxy.requests.length === 1);
    controller.abort();
    const { error } = await rejection(running, () => 0);
    expect(CancelledError.isInstance(error)).toBe(true);
    expect(checkEvents.some((e) => e.type === "check.result")).toBe(false);
    expect(watch.used()).toBe(1);
    await watch.allClosed(1_000);
  });
});
