/**
 * Retries and rate limits are visible (issue 15, item 4): a fault proxy in front of the real registry
 * answers 429 with Retry-After, then 503; the client reports each wait as a typed `registry.retry` /
 * `registry.ratelimit` event (host, attempt, wait, status; URL without credentials or query) — to
 * the request's own listener even on a client that has none (the shared default one), from the
 * checkers through `runCheckers`, from the write helpers, and through the real CLI: `kiln check
 * --json` streams them as NDJSON on stderr, plain `kiln check` prints a line while it waits.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { runCheckers, toNamedChecker } from "../src/checkers.js";
import { describeEvent } from "../src/cli/render.js";
import type { BuildEvent } from "../src/events.js";
import { uploadBlob } from "../src/registry/blobs.js";
import { checkImage } from "../src/registry/check.js";
import { RegistryClient } from "../src/registry/client.js";
import { startFaultProxy, type FaultProxy } from "../../test-utils/src/faultProxy.js";
import { pushTestImage, startRegistry, type TestRegistry } from "../../test-utils/src/registry.js";

const CORE = resolve(import.meta.dirname, "..");
let registry: TestRegistry;
let proxy: FaultProxy;
let workDir: string;

type RetryEvent = Extract<BuildEvent, { type: "registry.retry" }>;
type RateLimitEvent = Extract<BuildEvent, { type: "registry.ratelimit" }>;
const registryEvents = (events: BuildEvent[]) =>
  events.filter((e): e is RetryEvent | RateLimitEvent => e.type === "registry.retry" || e.type === "registry.ratelimit");

const isTagHead = ({ method, path }: { method: string; path: string }) => method === "HEAD" && path.endsWith("/manifests/v1");
/** The scenario of the issue: 429 with Retry-After: 1, then 503, then the real answer. */
const rateLimitedThenUnavailable = () =>
  proxy.setPlan({
    faults: [
      { kind: "status", status: 429, retryAfter: "1" },
      { kind: "status", status: 503 },
    ],
    match: isTagHead,
  });

/** A client like the shared default one: no listener of its own. */
const quietClient = () => new RegistryClient({ useDockerConfig: false, retry: { retries: 3, baseDelayMs: 20, maxDelayMs: 100 } });

beforeAll(async () => {
  registry = await startRegistry();
  await pushTestImage(registry, "events/img", "v1", "docker-v2");
  proxy = await startFaultProxy(registry.url);
  workDir = mkdtempSync(join(tmpdir(), "kiln-registry-events-"));
}, 120_000);
afterAll(async () => {
  await proxy?.stop();
  await registry?.stop();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});
beforeEach(() => proxy.setPlan([]));

/** The events one check through the proxy must report, in order (the 503's back-off at most `maxBackoffMs`). */
function expectRateLimitThenRetry(events: BuildEvent[], maxBackoffMs = 100): void {
  const url = `${proxy.url}/v2/events/img/manifests/v1`;
  expect(registryEvents(events)).toEqual([
    expect.objectContaining({
      type: "registry.ratelimit",
      host: proxy.host,
      registry: proxy.host,
      url,
      status: 429,
      retryAfterSeconds: 1,
      attempt: 1,
      waitMs: 1000,
    }),
    expect.objectContaining({ type: "registry.retry", host: proxy.host, url, status: 429, attempt: 1, waitMs: 1000, delayMs: 1000, reason: "HTTP 429" }),
    expect.objectContaining({ type: "registry.retry", host: proxy.host, url, status: 503, attempt: 2, reason: "HTTP 503" }),
  ]);
  const backoff = registryEvents(events)[2] as RetryEvent;
  expect(backoff.waitMs).toBeGreaterThan(0);
  expect(backoff.waitMs).toBeLessThanOrEqual(maxBackoffMs);
}

describe("the library reports every wait", () => {
  it("checkImage({ onEvent }) on a client without a listener: 429 (Retry-After 1) then 503 — typed events with host, attempt, wait, status", async () => {
    rateLimitedThenUnavailable();
    const events: BuildEvent[] = [];
    const started = Date.now();
    const result = await checkImage(`${proxy.host}/events/img:v1`, { platforms: ["linux/amd64"], client: quietClient(), onEvent: (e) => events.push(e) });
    expect(result).toMatchObject({ present: true });
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expectRateLimitThenRetry(events);
    expect(proxy.requests.filter(isTagHead)).toHaveLength(3);
  });

  it("the client's listener and the request's own both hear them", async () => {
    rateLimitedThenUnavailable();
    const own: BuildEvent[] = [];
    const clients: BuildEvent[] = [];
    const client = new RegistryClient({ useDockerConfig: false, retry: { retries: 3, baseDelayMs: 20, maxDelayMs: 100 }, onEvent: (e) => clients.push(e) });
    await client.headManifest(`${proxy.host}/events/img:v1`, { onEvent: (e) => own.push(e) });
    expectRateLimitThenRetry(own);
    expect(registryEvents(clients)).toEqual(registryEvents(own));
  });

  it("runCheckers hands checkers an onEvent: a checker's registry waits arrive as events of the image checked, between check.start and check.result", async () => {
    rateLimitedThenUnavailable();
    const events: BuildEvent[] = [];
    const client = quietClient();
    const checker = toNamedChecker({
      name: "registry",
      async imageExists(repository: string, tag: string, arch?: readonly string[], options?: { signal?: AbortSignal; onEvent?: (e: BuildEvent) => void }) {
        const answer = await checkImage(`${repository}:${tag}`, { client, platforms: arch ?? [], ...options });
        return answer.present ? `${repository}:${tag}` : null;
      },
    } as never);
    const image = `${proxy.host}/events/img:v1`;
    const outcome = await runCheckers([checker], `${proxy.host}/events/img`, "v1", ["linux/amd64"], { image, onEvent: (e) => events.push(e) });
    expect(outcome.uri).toBe(image);
    expect(events.map((e) => e.type)).toEqual(["check.start", "registry.ratelimit", "registry.retry", "registry.retry", "check.result"]);
    expect(events.every((e) => e.image === image)).toBe(true);
    expectRateLimitThenRetry(events);
  });

  it("the write helpers report too, and an upload URL is shown without its query (no ?digest=, no _state)", async () => {
    const isUploadPost = ({ method, path }: { method: string; path: string }) => method === "POST" && path.includes("/blobs/uploads/");
    proxy.setPlan({ faults: [{ kind: "status", status: 503 }], match: isUploadPost });
    const events: BuildEvent[] = [];
    const bytes = Buffer.from(`events-${Date.now()}`);
    const digest = `sha256:${(await import("node:crypto")).createHash("sha256").update(bytes).digest("hex")}`;
    const uploaded = await uploadBlob(
      quietClient(),
      `${proxy.host}/events/blob`,
      { digest, size: bytes.length, open: () => Readable.from([bytes]) },
      { onEvent: (e) => events.push(e) },
    );
    expect(uploaded).toMatchObject({ digest });
    const retries = registryEvents(events).filter((e) => e.type === "registry.retry");
    expect(retries).toEqual([expect.objectContaining({ host: proxy.host, status: 503, attempt: 1, url: `${proxy.url}/v2/events/blob/blobs/uploads/` })]);
    expect(JSON.stringify(events)).not.toMatch(/\?|digest=|_state/);
  });
});

describe("the CLI shows them", () => {
  interface Run {
    code: number | null;
    stdout: string;
    stderr: string;
    /** ms after the start at which stderr first matched `watch`, and at which the process ended. */
    sawAt?: number;
    endedAt: number;
  }

  function kiln(args: string[], watch?: RegExp): Promise<Run> {
    return new Promise((done) => {
      const started = Date.now();
      const child = spawn(process.execPath, [join(CORE, "dist/cli/main.js"), ...args], {
        cwd: workDir,
        env: { ...process.env, DOCKER_CONFIG: join(workDir, "docker-config"), KILN_LOCK_DIR: join(workDir, "locks") },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      let sawAt: number | undefined;
      child.stdout.on("data", (c) => (stdout += c));
      child.stderr.on("data", (c) => {
        stderr += c;
        if (sawAt === undefined && watch?.test(stderr)) sawAt = Date.now() - started;
      });
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      child.on("close", (code) => {
        clearTimeout(timer);
        done({ code, stdout, stderr, sawAt, endedAt: Date.now() - started });
      });
    });
  }

  it("kiln check --json: the answer on stdout, the registry.ratelimit / registry.retry events as NDJSON on stderr", async () => {
    rateLimitedThenUnavailable();
    const run = await kiln(["check", `${proxy.host}/events/img:v1`, "--json"]);
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ status: "present" });
    const events = run.stderr
      .trim()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as BuildEvent);
    // The CLI's client retries with the default back-off (a second retry waits 250–500 ms).
    expectRateLimitThenRetry(events, 500);
  });

  it("plain kiln check prints 'registry <host> rate-limited, retrying in 1 s' while it waits, not after", async () => {
    rateLimitedThenUnavailable();
    const line = `registry ${proxy.host} rate-limited, retrying in 1 s`;
    const run = await kiln(["check", `${proxy.host}/events/img:v1`], new RegExp(line.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain(line);
    expect(run.stderr).toMatch(new RegExp(`registry ${proxy.host.replace(/\./g, "\\.")} answered HTTP 503, retrying in 0\\.\\d s \\(retry 2\\)`));
    // Printed before the 1 s wait, i.e. while waiting: the process ended at least ~1 s later.
    expect(run.sawAt).toBeDefined();
    expect(run.endedAt - run.sawAt!).toBeGreaterThanOrEqual(800);
  });

  it("describeEvent: one line per wait (the retry of a 429 adds nothing to its rate-limit line)", () => {
    const base = { time: 0, image: "r.example/a:1", registry: "r.example", host: "r.example", url: "https://r.example/v2/a/manifests/1" };
    expect(describeEvent({ ...base, type: "registry.ratelimit", status: 429, retryAfterSeconds: 2, attempt: 1, waitMs: 2000 })).toBe(
      "registry r.example rate-limited, retrying in 2 s",
    );
    expect(describeEvent({ ...base, type: "registry.retry", status: 429, attempt: 1, waitMs: 2000, delayMs: 2000, reason: "HTTP 429" })).toBeUndefined();
    expect(describeEvent({ ...base, type: "registry.retry", status: 503, attempt: 2, waitMs: 250, delayMs: 250, reason: "HTTP 503" })).toBe(
      "registry r.example answered HTTP 503, retrying in 0.3 s (retry 2)",
    );
    expect(describeEvent({ ...base, type: "registry.retry", attempt: 1, waitMs: 1500, delayMs: 1500, reason: "reset" })).toBe(
      "registry r.example failed (reset), retrying in 1.5 s (retry 1)",
    );
    expect(describeEvent({ ...base, type: "registry.ratelimit", status: 429, retryAfterSeconds: 60 })).toBe("registry r.example rate-limited");
    expect(describeEvent({ ...base, type: "registry.ratelimit", status: 200, limit: 100, remaining: 7 })).toBe("rate limit on r.example (7/100 left)");
  });
});
