// The real `kiln` binary (dist/cli/main.js): `kiln build` of many images under the CLI's one Ctrl-C
// signal prints no MaxListenersExceededWarning. The spec sets an in-process builder (init) whose checker
// asks a loopback registry answering 503 through core's registry client (so each check retries), and
// whose builds wait on their signal; no daemon is involved.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildCoreCli } from "./support/cliProject.js";
import { CORE_DIR, runKiln } from "./support/runKiln.js";

const IMAGES = 24;
const dir = mkdtempSync(join(tmpdir(), "kiln-abort-listeners-cli-"));
let server: http.Server;
let answered = 0;

const specSource = (core: string, plugin: string, registry: string) => `
import { Image, init } from ${JSON.stringify(core)};
import { RegistryClient, checkImage } from ${JSON.stringify(plugin)};
const wait = (ms, signal) => new Promise((resolve, reject) => {
  if (signal?.aborted) return reject(signal.reason);
  const onAbort = () => { clearTimeout(timer); reject(signal.reason); };
  const timer = setTimeout(() => { signal?.removeEventListener("abort", onAbort); resolve(); }, ms);
  signal?.addEventListener("abort", onAbort, { once: true });
});
const client = new RegistryClient({ retry: { retries: 2, baseDelayMs: 5, maxDelayMs: 20 } });
init({
  imageBuilder: {
    getCheckers: () => [{
      imageExists: async (repository, tag, platforms, options) => {
        const answer = await checkImage(repository + ":" + tag, { client, platforms, signal: options?.signal, onEvent: options?.onEvent });
        return answer.present ? repository + ":" + tag : null;
      },
    }],
    buildImage: async (image, options = {}) => {
      await wait(15, options.signal);
      return { uri: image.uri, digest: "sha256:" + "0".repeat(64) };
    },
  },
});
const run = ${JSON.stringify(`${process.pid}-${Date.now()}`)};
${Array.from(
  { length: IMAGES },
  (_, i) =>
    `export const img${i} = Image.fromBase("busybox:1.36", { registry: ${JSON.stringify(registry)}, name: "cli-listeners-" + run + "-${i}" }).withEnvVars({ INDEX: "${i}" });`,
).join("\n")}
`;

beforeAll(async () => {
  server = http.createServer((request, response) => {
    answered++;
    request.resume();
    response.writeHead(503, { "content-type": "text/plain" });
    response.end("unavailable");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  buildCoreCli();
  const dist = (file: string) => pathToFileURL(join(CORE_DIR, "dist", file)).href;
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "listeners-cli", private: true, type: "module" }));
  writeFileSync(join(dir, "spec.mjs"), specSource(dist("index.js"), dist("plugin.js"), `127.0.0.1:${(server.address() as AddressInfo).port}`));
}, 300_000);
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  await new Promise<void>((resolve) => server?.close(() => resolve()));
});

describe("kiln build of many images under the CLI's signal", () => {
  it(`${IMAGES} images whose checks retry against a 503 registry: all built, no MaxListenersExceededWarning`, async () => {
    const run = await runKiln(["build", "spec.mjs", "--json"], {
      cwd: dir,
      env: { CI: "1", KILN_HASH_CACHE: "off", KILN_LOCK_DIR: join(dir, "locks") },
      timeoutMs: 120_000,
    });
    expect(run.code, run.stderr).toBe(0);
    expect(answered).toBeGreaterThan(IMAGES);
    // --json: the events and the summary, one JSON object a line, on stderr.
    const lines = run.stderr
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as { type?: string; action?: string });
    expect(lines.filter((l) => l.type === "registry.retry").length).toBeGreaterThan(0);
    const summary = lines.filter((l) => l.type === "summary");
    expect(summary.map((l) => l.action)).toEqual(Array(IMAGES).fill("built"));
    expect(run.stderr).not.toContain("MaxListenersExceededWarning");
    expect(run.stdout).not.toContain("MaxListenersExceededWarning");
  }, 180_000);

  it(`kiln plan of ${IMAGES} images at --concurrency 16 (above Node's limit of 10 listeners): no MaxListenersExceededWarning`, async () => {
    const run = await runKiln(["plan", "spec.mjs", "--json", "--concurrency", "16"], {
      cwd: dir,
      env: { CI: "1", KILN_HASH_CACHE: "off", KILN_LOCK_DIR: join(dir, "locks") },
      timeoutMs: 120_000,
    });
    // The 503 registry answers nothing: every row is "unknown" (exit 2), with its reason.
    expect(run.code, run.stderr).toBe(2);
    const rows = run.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { exists: unknown; reason?: string });
    expect(rows.length).toBe(IMAGES);
    expect(rows.every((row) => row.exists === "unknown" && row.reason !== undefined)).toBe(true);
    expect(run.stderr).not.toContain("MaxListenersExceededWarning");
  }, 180_000);
});
