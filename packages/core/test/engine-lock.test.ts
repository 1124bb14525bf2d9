import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { build } from "../src/engine.js";
import type { BuildEvent } from "../src/events.js";
import { Image } from "../src/image.js";
import { acquireImageLock, lockPathFor } from "../src/lock.js";

const scratch = mkdtempSync(join(tmpdir(), "kiln-lock-"));
const lockDir = join(scratch, "locks");
const worker = join(import.meta.dirname, "fixtures/plugins/engine-worker.ts");
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

interface WorkerRun {
  child: ReturnType<typeof spawn>;
  lines: Array<Record<string, any>>;
  done: Promise<number | null>;
}

function startWorker(store: string, runId: string, delayMs: number): WorkerRun {
  const child = spawn(process.execPath, ["--import", "tsx", worker, store, runId, String(delayMs)], {
    cwd: join(import.meta.dirname, ".."),
    env: { ...process.env, KILN_LOCK_DIR: lockDir },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines: Array<Record<string, any>> = [];
  let buffer = "";
  child.stdout!.on("data", (chunk) => {
    buffer += chunk;
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      lines.push(JSON.parse(buffer.slice(0, nl)));
      buffer = buffer.slice(nl + 1);
    }
  });
  const done = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  return { child, lines, done };
}

describe("cross-process build lock", () => {
  it("two processes building the same image build it once; the second waits then finds it", async () => {
    const store = join(scratch, "store-1");
    mkdirSync(store, { recursive: true });
    const runId = `same-${Date.now()}`;
    const a = startWorker(store, runId, 1500);
    const b = startWorker(store, runId, 1500);
    expect(await a.done).toBe(0);
    expect(await b.done).toBe(0);
    const all = [...a.lines, ...b.lines];
    expect(all.filter((l) => l.building).length).toBe(1);
    const outcomes = [a, b].map((w) => w.lines.find((l) => l.result)!.result.outcome).sort();
    expect(outcomes).toEqual(["built", "found"]);
    const waiter = [a, b].find((w) => w.lines.find((l) => l.result)!.result.outcome === "found")!;
    expect(waiter.lines.some((l) => l.event?.type === "lock.wait")).toBe(true);
    // Lock files are removed afterwards.
    expect(readdirSync(lockDir).filter((f) => f.endsWith(".lock"))).toEqual([]);
  });

  it("a holder killed mid-build leaves a stale lock that the next process breaks", async () => {
    const store = join(scratch, "store-2");
    mkdirSync(store, { recursive: true });
    const runId = `killed-${Date.now()}`;
    const victim = startWorker(store, runId, 60_000);
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (victim.lines.some((l) => l.building)) {
          clearInterval(poll);
          resolve();
        }
      }, 50);
    });
    victim.child.kill("SIGKILL");
    await victim.done;
    expect(readdirSync(lockDir).filter((f) => f.endsWith(".lock")).length).toBe(1); // left behind
    const next = startWorker(store, runId, 10);
    expect(await next.done).toBe(0);
    expect(next.lines.find((l) => l.result)!.result.outcome).toBe("built");
    expect(readdirSync(lockDir).filter((f) => f.endsWith(".lock"))).toEqual([]);
  });

  it("acquire: waits for a live holder, honours abort, breaks an unparsable lock only when old", async () => {
    const dir = join(scratch, "unit");
    const first = await acquireImageLock("key-a", { dir });
    let waitedOn = "";
    const controller = new AbortController();
    const second = acquireImageLock("key-a", { dir, onWait: (p) => (waitedOn = p), signal: controller.signal, pollMs: 20 });
    await new Promise((r) => setTimeout(r, 100));
    expect(waitedOn).toBe(lockPathFor("key-a", dir));
    controller.abort();
    await expect(second).rejects.toMatchObject({ code: "KILN_CANCELLED" });
    first.release();
    expect(existsSync(first.path)).toBe(false);
    // A lock from a dead pid on this host is stale.
    writeFileSync(lockPathFor("key-b", dir), JSON.stringify({ pid: 2 ** 22 + 12345, host: hostname(), nonce: "x", key: "key-b", createdAt: 0 }));
    const taken = await acquireImageLock("key-b", { dir });
    expect(taken.waited).toBe(false);
    taken.release();
  });

  it("under the lock the engine checks again even when it did not wait: an image pushed meanwhile is found, not built twice; force skips both checks", async () => {
    // Another process pushed and released the lock while our first check was out: that check said
    // absent, the second (under the lock) says present.
    let asked = 0;
    const built: string[] = [];
    const builder = {
      getCheckers: () => [
        {
          async imageExists(repository: string, tag: string) {
            return ++asked >= 2 ? `${repository}:${tag}` : null;
          },
        },
      ],
      async buildImage(image: Image) {
        built.push(image.uri);
        return { uri: image.uri };
      },
    };
    const projectDir = join(scratch, "recheck");
    mkdirSync(projectDir, { recursive: true });
    const saved = process.env.KILN_LOCK_DIR;
    process.env.KILN_LOCK_DIR = join(scratch, "recheck-locks");
    try {
      const image = Image.fromBase("kiln-test/busybox:1.35", { registry: "localhost:5000", name: "lock-test" }).withEnvVars({ RUN: `recheck-${Date.now()}` });
      const events: BuildEvent[] = [];
      const result = await build(image, { builder, projectDir, onEvent: (e) => events.push(e) });
      expect(result).toMatchObject({ outcome: "found", uri: image.uri });
      expect(asked).toBe(2);
      expect(built).toEqual([]);
      expect(events.some((e) => e.type === "lock.wait")).toBe(false);
      expect(events.filter((e) => e.type === "check.result").map((e) => (e as { result: string }).result)).toEqual(["absent", "present"]);

      const forced = await build(image, { builder, projectDir, force: true });
      expect(forced.outcome).toBe("built");
      expect(asked).toBe(2);
      expect(built).toEqual([image.uri]);
    } finally {
      if (saved === undefined) delete process.env.KILN_LOCK_DIR;
      else process.env.KILN_LOCK_DIR = saved;
    }
  });
});
