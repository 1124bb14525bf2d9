/**
 * Cancellation at the phases not covered elsewhere: while CHECKING (the registry stalled behind the
 * fault proxy's slow drip) and while SENDING A LARGE CONTEXT (a 200 MB source file into the main
 * daemon), each through an AbortSignal (in-process) and SIGINT (the CLI). Outcome: CancelledError /
 * exit 130 promptly, nothing reported done (no `done` event, no URI on stdout), no build started
 * while checking, no temp files (TMPDIR stays empty), no lock left, no image tagged.
 */
import { spawn } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync, ftruncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { build, CancelledError, Image, init, type BuildEvent } from "@kiln/core";
import { ensureBusyboxImage, localImageExists, startFaultProxy, startRegistry, uniqueName, type FaultProxy, type TestRegistry } from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DockerImageBuilder } from "../../src/builder.js";

const DOCKER_PKG = resolve(import.meta.dirname, "../..");
const CORE_PKG = resolve(DOCKER_PKG, "../core");
const BIG_BYTES = 200 * 1024 * 1024;
let busybox: string;
let registry: TestRegistry;
let stalled: FaultProxy;
let project: string;

beforeAll(async () => {
  busybox = await ensureBusyboxImage();
  registry = await startRegistry();
  // Every registry request answered one byte every 2 s: a check that never completes in time.
  stalled = await startFaultProxy(registry.url, { faults: [], then: { kind: "drip", intervalMs: 2_000, chunkBytes: 1 } });
  project = realpathSync(mkdtempSync(join(tmpdir(), "kiln-rel-cancel-")));
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "cancel-app", private: true, type: "module", dependencies: { "@kiln/core": "*", "@kiln/docker": "*" } }));
  mkdirSync(join(project, "node_modules/@kiln"), { recursive: true });
  symlinkSync(CORE_PKG, join(project, "node_modules/@kiln/core"));
  symlinkSync(DOCKER_PKG, join(project, "node_modules/@kiln/docker"));
  mkdirSync(join(project, "locks"));
  mkdirSync(join(project, "big"));
  // 200 MB (sparse on disk, 200 MB through the tar stream and the socket).
  const fd = openSync(join(project, "big", "blob.bin"), "w");
  ftruncateSync(fd, BIG_BYTES);
  closeSync(fd);
  process.env.KILN_LOCK_DIR = join(project, "locks");
  init({ projectDir: project });
}, 60_000);
afterAll(async () => {
  await stalled?.stop();
  await registry?.stop();
  if (project) rmSync(project, { recursive: true, force: true });
});

const builder = () => new DockerImageBuilder({ buildkit: false, incremental: false, env: { ...process.env, DOCKER_CONFIG: "/nonexistent" } });
const locksLeft = () => readdirSync(join(project, "locks")).filter((f) => f.endsWith(".lock"));

/** Builds `image` in-process, aborting when `when(event)` first holds (plus `delayMs`); returns what happened. */
async function abortedBuild(image: Image, when: (e: BuildEvent) => boolean, delayMs: number) {
  const controller = new AbortController();
  const events: BuildEvent[] = [];
  let abortedAt = 0;
  const error = await build(image, {
    builder: builder(),
    signal: controller.signal,
    onEvent: (e) => {
      events.push(e);
      if (!abortedAt && when(e)) {
        abortedAt = -1;
        setTimeout(() => {
          abortedAt = Date.now();
          controller.abort();
        }, delayMs);
      }
    },
  }).then(() => undefined, (e: unknown) => e);
  return { error, events, afterAbortMs: Date.now() - abortedAt, abortedAt };
}

function kiln(args: string[], env: Record<string, string>, onStderr: (text: string, child: ReturnType<typeof spawn>) => void) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((done) => {
    const child = spawn(process.execPath, [join(CORE_PKG, "dist/cli/main.js"), ...args], { cwd: project, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c) => (stdout += c));
    child.stderr.on("data", (c) => {
      stderr += c;
      onStderr(stderr, child);
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 90_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

describe("cancelled while checking (registry stalled by a slow drip)", () => {
  it("AbortSignal: CancelledError within 2 s, no build started, nothing done, no lock", async () => {
    const image = Image.fromBase(busybox, { registry: stalled.host, name: uniqueName("kiln-rel-cancel-check") }).withCommands("true");
    const outcome = await abortedBuild(image, (e) => e.type === "check.start" && e.checker === "docker-registry", 1_000);
    expect(CancelledError.isInstance(outcome.error), String(outcome.error)).toBe(true);
    expect(outcome.abortedAt).toBeGreaterThan(0);
    expect(outcome.afterAbortMs).toBeLessThan(2_000);
    expect(outcome.events.some((e) => e.type === "build.start" || e.type === "done")).toBe(false);
    expect(stalled.requests.length).toBeGreaterThan(0); // the check really was in flight at the proxy
    expect(locksLeft()).toEqual([]);
  });

  it("SIGINT to the CLI while checking: exit 130 within 3 s, no URI, no build, no temp files, no lock", async () => {
    const tmp = mkdtempSync(join(project, "tmp-"));
    writeFileSync(join(project, "check.mjs"), `import { Image } from "@kiln/core";\nexport default Image.fromBase(${JSON.stringify(busybox)}, { registry: ${JSON.stringify(stalled.host)}, name: ${JSON.stringify(uniqueName("kiln-rel-cancel-cli"))} }).withCommands("true");\n`);
    let sentAt = 0;
    const run = await kiln(["build", "check.mjs", "--json"], { TMPDIR: tmp, DOCKER_CONFIG: "/nonexistent", DOCKER_BUILDKIT: "0" }, (text, child) => {
      if (!sentAt && text.includes('"checker":"docker-registry"')) {
        sentAt = Date.now();
        setTimeout(() => child.kill("SIGINT"), 1_000);
      }
    });
    expect(sentAt, run.stderr).toBeGreaterThan(0);
    expect(run.code, run.stderr.slice(-600)).toBe(130);
    expect(Date.now() - sentAt - 1_000).toBeLessThan(3_000);
    expect(run.stdout).toBe("");
    expect(run.stderr).toContain("KILN_CANCELLED");
    expect(run.stderr).not.toContain('"type":"build.start"');
    expect(run.stderr).not.toContain('"type":"done"');
    expect(readdirSync(tmp)).toEqual([]);
    expect(locksLeft()).toEqual([]);
  }, 60_000);
});

describe("cancelled while sending a 200 MB context to the daemon", () => {
  it("AbortSignal: CancelledError within 5 s, nothing done, no image tagged, no lock", async () => {
    const image = Image.fromBase(busybox, { name: uniqueName("kiln-rel-cancel-ctx") }).withSourceFolder(join(project, "big"), "/big");
    const outcome = await abortedBuild(image, (e) => e.type === "build.start", 150);
    expect(CancelledError.isInstance(outcome.error), String(outcome.error)).toBe(true);
    expect(outcome.afterAbortMs).toBeLessThan(5_000);
    expect(outcome.events.some((e) => e.type === "done")).toBe(false);
    expect(await localImageExists(image.uri)).toBe(false);
    expect(locksLeft()).toEqual([]);
    console.info(`[reliability] context cancel: CancelledError ${outcome.afterAbortMs} ms after abort`);
  }, 60_000);

  it("SIGINT to the CLI while sending: exit 130 within 5 s, no URI, no temp files, no lock, no image", async () => {
    const tmp = mkdtempSync(join(project, "tmp-"));
    const name = uniqueName("kiln-rel-cancel-ctx-cli");
    writeFileSync(join(project, "big.mjs"), `import { Image } from "@kiln/core";\nexport default Image.fromBase(${JSON.stringify(busybox)}, { name: ${JSON.stringify(name)} }).withSourceFolder("big", "/big");\n`);
    let sentAt = 0;
    const run = await kiln(["build", "big.mjs", "--json"], { TMPDIR: tmp, DOCKER_BUILDKIT: "0", KILN_DOCKER_INCREMENTAL: "0" }, (text, child) => {
      if (!sentAt && text.includes('"type":"build.start"')) {
        sentAt = Date.now();
        setTimeout(() => child.kill("SIGINT"), 150);
      }
    });
    expect(sentAt, run.stderr).toBeGreaterThan(0);
    expect(run.code, run.stderr.slice(-600)).toBe(130);
    expect(Date.now() - sentAt).toBeLessThan(5_000);
    expect(run.stdout).toBe("");
    expect(run.stderr).not.toContain('"type":"done"');
    expect(readdirSync(tmp)).toEqual([]);
    expect(locksLeft()).toEqual([]);
    const images = await import("@kiln/test-utils").then((m) => m.docker(["images", "-q", name]));
    expect(images.trim()).toBe("");
  }, 60_000);
});
