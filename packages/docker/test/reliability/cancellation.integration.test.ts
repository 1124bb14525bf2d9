/**
 * Cancellation at the phases not covered elsewhere: while CHECKING (the registry stalled behind the
 * fault proxy's slow drip) and while SENDING A LARGE CONTEXT (a 200 MB source file into the main
 * daemon), each through an AbortSignal (in-process) and SIGINT (the CLI); and SIGINT/SIGTERM to the
 * CLI while PUSHING (the daemon's push stalled behind the push fault proxy; the AbortSignal case is
 * in push-faults). Outcome: CancelledError / exit 130 promptly, nothing reported done (no `done` or
 * `push.done` event, no URI on stdout), no build started while checking, no temp files (TMPDIR stays
 * empty), no lock left, no image tagged / no manifest under the tag in the registry.
 */
import type { ChildProcess } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, writeFileSync, ftruncateSync } from "node:fs";
import { join } from "node:path";
import { build, CancelledError, Image, init, RegistryClient, type BuildEvent } from "@kiln/core";
import {
  DockerCleanup,
  ensureBusyboxImage,
  localImageExists,
  pushSteps,
  startFaultProxy,
  startPushFaultProxy,
  startRegistry,
  uniqueName,
  type FaultProxy,
  type PushFaultPlan,
  type PushFaultProxy,
  type TestRegistry,
} from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DockerImageBuilder } from "../../src/builder.js";
import { linkedKilnProject, runKiln } from "./kilnProject.js";

const BIG_BYTES = 200 * 1024 * 1024;
let busybox: string;
let registry: TestRegistry;
let stalled: FaultProxy;
let pushProxy: PushFaultProxy;
let project: string;
const cleanup = new DockerCleanup();

beforeAll(async () => {
  busybox = await ensureBusyboxImage();
  registry = await startRegistry();
  // Every registry request answered one byte every 2 s: a check that never completes in time.
  stalled = await startFaultProxy(registry.url, { faults: [], then: { kind: "drip", intervalMs: 2_000, chunkBytes: 1 } });
  // The daemon pushes through this one; each case sets the step it stalls.
  pushProxy = await startPushFaultProxy(registry.url);
  project = linkedKilnProject("kiln-rel-cancel-", "cancel-app");
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
  await cleanup.run();
  await pushProxy?.stop();
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
  }).then(
    () => undefined,
    (e: unknown) => e,
  );
  return { error, events, afterAbortMs: Date.now() - abortedAt, abortedAt };
}

function kiln(args: string[], env: Record<string, string>, onStderr: (text: string, child: ChildProcess) => void) {
  return runKiln(project, args, { env: { ...process.env, ...env }, timeoutMs: 90_000, onStderr });
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
    writeFileSync(
      join(project, "check.mjs"),
      `import { Image } from "@kiln/core";\nexport default Image.fromBase(${JSON.stringify(busybox)}, { registry: ${JSON.stringify(stalled.host)}, name: ${JSON.stringify(uniqueName("kiln-rel-cancel-cli"))} }).withCommands("true");\n`,
    );
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
    writeFileSync(
      join(project, "big.mjs"),
      `import { Image } from "@kiln/core";\nexport default Image.fromBase(${JSON.stringify(busybox)}, { name: ${JSON.stringify(name)} }).withSourceFolder("big", "/big");\n`,
    );
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

describe("SIGINT / SIGTERM to the CLI while pushing (the daemon's push stalled behind the push fault proxy)", () => {
  /** How long a dripped blob-upload answer is held back: the daemon's push is stuck on it meanwhile. */
  const DRIP_MS = 4_000;
  const stalls: { step: string; plan: PushFaultPlan; stalledKind: "hang" | "drip" }[] = [
    // Everything uploaded, only the manifest missing: the last moment a push can be cut short.
    { step: "the manifest PUT never answered", plan: { faults: [], match: pushSteps.manifestPut, then: { kind: "hang" } }, stalledKind: "hang" },
    // A blob upload's closing PUT reaches the registry but its answer is held back; the plan is lifted at
    // the signal, so a push the daemon carried on with would complete and the registry would hold the tag.
    {
      step: "a blob upload answered late",
      plan: { faults: [], match: (r) => pushSteps.uploadData(r) && r.method === "PUT", then: { kind: "drip", intervalMs: DRIP_MS } },
      stalledKind: "drip",
    },
  ];

  /** `push.mjs` declaring a fresh image with a layer of its own (the name in a file), so the push really uploads a blob. */
  function pushSpec(name: string): Image {
    writeFileSync(
      join(project, "push.mjs"),
      `import { Image } from "@kiln/core";\nexport default Image.fromBase(${JSON.stringify(busybox)}, { registry: ${JSON.stringify(pushProxy.host)}, name: ${JSON.stringify(name)} }).withCommands(${JSON.stringify(`echo ${name} > /id.txt`)});\n`,
    );
    const declared = Image.fromBase(busybox, { registry: pushProxy.host, name }).withCommands(`echo ${name} > /id.txt`);
    cleanup.image(declared.uri);
    return declared;
  }

  it("control: with no signal the same dripped push completes, and the registry (asked directly) holds the tag under the reported digest", async () => {
    const name = uniqueName("kiln-rel-cancel-push-ok");
    const declared = pushSpec(name);
    pushProxy.requests.length = 0;
    pushProxy.setPlan(stalls[1]!.plan);
    const run = await kiln(["build", "push.mjs", "--json"], { DOCKER_CONFIG: "/nonexistent", DOCKER_BUILDKIT: "0" }, () => {});
    pushProxy.setPlan([]);
    expect(run.code, run.stderr.slice(-600)).toBe(0);
    expect(run.stdout.trim()).toBe(declared.uri);
    expect(pushProxy.requests.some((r) => r.fault === "drip")).toBe(true);
    const done = run.stderr
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as { type: string; digest?: string })
      .find((e) => e.type === "done");
    const held = await new RegistryClient({ useDockerConfig: false }).headManifest(`${registry.host}/${name}:${declared.tag}`);
    expect(held?.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(done?.digest).toBe(held!.digest);
  }, 90_000);

  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    for (const stall of stalls) {
      it(`${signal} while ${stall.step}: exit 130 within 3 s, no push.done/done/URI, no temp files, no lock, registry has no manifest for the tag`, async () => {
        const tmp = mkdtempSync(join(project, "tmp-"));
        const name = uniqueName("kiln-rel-cancel-push");
        const declared = pushSpec(name);
        pushProxy.requests.length = 0;
        pushProxy.setPlan(stall.plan);
        let sentAt = 0;
        let waiting = false;
        const run = await kiln(["build", "push.mjs", "--json"], { TMPDIR: tmp, DOCKER_CONFIG: "/nonexistent", DOCKER_BUILDKIT: "0" }, (text, child) => {
          // In the push phase for sure: the CLI reported push progress AND the proxy holds the stalled request.
          if (waiting || sentAt || !text.includes('"type":"push.progress"')) return;
          waiting = true;
          const poll = setInterval(() => {
            if (!pushProxy.requests.some((r) => r.fault === stall.stalledKind)) return;
            clearInterval(poll);
            pushProxy.setPlan([]); // from now on the registry path is clean: nothing stops a push that goes on
            sentAt = Date.now();
            child.kill(signal);
          }, 50);
          child.once("close", () => clearInterval(poll));
        });
        const exitedAt = Date.now();
        expect(sentAt, run.stderr.slice(-1_500)).toBeGreaterThan(0);
        expect(run.code, run.stderr.slice(-600)).toBe(130);
        expect(exitedAt - sentAt).toBeLessThan(3_000);

        // Nothing reported pushed or done, no URI result.
        expect(run.stdout).toBe("");
        const events = run.stderr
          .split("\n")
          .filter((l) => l.startsWith("{"))
          .map((l) => JSON.parse(l) as { type: string; image?: string; error?: { code: string } });
        expect(events.filter((e) => e.type === "push.progress").length).toBeGreaterThan(0);
        expect(new Set(events.filter((e) => e.image).map((e) => e.image))).toEqual(new Set([declared.uri]));
        expect(events.filter((e) => e.type === "push.done" || e.type === "done")).toEqual([]);
        expect(events.filter((e) => e.type === "error").map((e) => e.error?.code)).toEqual(["KILN_CANCELLED"]);
        expect(run.stderr).not.toMatch(/"type":"(push\.)?done"/);

        // No temp files, no lock.
        expect(readdirSync(tmp)).toEqual([]);
        expect(locksLeft()).toEqual([]);

        // The daemon's push ended with the CLI: past the moment a held answer is released (drip) and
        // with the proxy passing everything, no manifest arrives and the registry has none for the tag.
        const quietUntil = sentAt + (stall.stalledKind === "drip" ? DRIP_MS + 3_000 : 3_000);
        await new Promise((r) => setTimeout(r, Math.max(0, quietUntil - Date.now())));
        const manifestPuts = pushProxy.requests.filter(pushSteps.manifestPut);
        expect(manifestPuts.map((r) => r.fault)).toEqual(stall.stalledKind === "hang" ? ["hang"] : []);
        const direct = new RegistryClient({ useDockerConfig: false });
        expect(await direct.headManifest(`${registry.host}/${name}:${declared.tag}`)).toBeNull();
        const head = await fetch(`${registry.url}/v2/${name}/manifests/${declared.tag}`, {
          method: "HEAD",
          headers: { accept: "application/vnd.docker.distribution.manifest.v2+json" },
        });
        expect(head.status).toBe(404);
        console.info(`[reliability] ${signal} while pushing (${stall.step}): exit ${run.code} ${exitedAt - sentAt} ms after the signal`);
      }, 90_000);
    }
  }
});
