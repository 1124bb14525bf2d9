/**
 * The per-image build lock (lock.ts) against real processes and a real file system: holders are
 * identified beyond their pid (start time, boot id, pid namespace, hostname), leases expire when
 * nobody renews them, and the lock directory and lock files are used only when they are this
 * user's alone. Tests run as root, so `chown` can plant a directory "another user" (nobody) owns.
 * Lock files are planted here the way another Kiln would write them, from facts read in /proc
 * directly (not through lock.ts), so a wrong reading in lock.ts cannot cancel out.
 */
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { acquireImageLock, lockDirectory, lockPathFor, type AcquireLockOptions, type LockHandle } from "../src/lock.js";

const NOBODY = 65534;
const scratch = mkdtempSync(join(tmpdir(), "kiln-lock-test-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let dirs = 0;
/** A private lock directory per test. */
function freshDir(): string {
  const dir = join(scratch, `locks-${++dirs}`);
  mkdirSync(dir, { mode: 0o700 });
  return dir;
}

/** Field 22 of /proc/<pid>/stat: the process's start time in clock ticks since boot. */
function startTimeOf(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]!;
}

const here = {
  host: hostname(),
  bootId: readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim(),
  pidNamespace: readlinkSync("/proc/self/ns/pid"),
};
/** A pid no process has (above the kernel's pid_max limit of 2^22). */
const DEAD_PID = 2 ** 22 + 4321;

type LockFields = Record<string, unknown>;
/** A lock file as another Kiln process would have written it: this process, on this host, unless overridden. */
function lockText(fields: LockFields = {}): string {
  const now = Date.now();
  return JSON.stringify({
    version: 2,
    pid: process.pid,
    ...here,
    startTime: startTimeOf(process.pid),
    nonce: randomUUID(),
    key: "planted",
    createdAt: now,
    renewedAt: now,
    renewals: 0,
    leaseMs: 30_000,
    ...fields,
  });
}
function plant(path: string, fields: LockFields = {}): void {
  writeFileSync(path, lockText(fields), { mode: 0o600 });
}

interface Acquired {
  lock: LockHandle;
  ms: number;
  waited: boolean;
}

/** acquireImageLock with a deadline: rejects "still waiting" (and stops waiting) when it has not got the lock by then. */
async function acquireWithin(key: string, options: AcquireLockOptions, deadlineMs: number): Promise<Acquired> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), deadlineMs);
  const started = performance.now();
  let waited = false;
  try {
    const lock = await acquireImageLock(key, { pollMs: 20, ...options, signal: controller.signal, onWait: () => (waited = true) });
    return { lock, ms: performance.now() - started, waited };
  } catch (error) {
    if (controller.signal.aborted) throw new Error(`still waiting for the lock after ${deadlineMs} ms`);
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("a lock's holder is identified beyond its pid", () => {
  it("a running pid with another start time (a reused pid: this process's own, and pid 1) is broken at once; with its real start time it is waited for, lease or not", async () => {
    const dir = freshDir();
    for (const pid of [process.pid, 1]) {
      expect(startTimeOf(pid)).not.toBe("7");
      plant(lockPathFor(`reused-${pid}`, dir), { pid, startTime: "7" });
      const { lock, ms, waited } = await acquireWithin(`reused-${pid}`, { dir }, 5_000);
      expect(waited).toBe(false);
      expect(ms).toBeLessThan(2_000);
      lock.release();
      expect(existsSync(lock.path)).toBe(false);
    }
    // The same running pid with its real start time is alive: waited for even with its short lease
    // long over and a renewal time an hour old — a verified live holder is never broken.
    plant(lockPathFor("alive", dir), { leaseMs: 200, renewedAt: Date.now() - 3_600_000 });
    await expect(acquireWithin("alive", { dir, leaseMs: 200 }, 1_500)).rejects.toThrow(/still waiting/);
  });

  it("a lock written before a reboot (same hostname, another boot id) is broken at once, even naming a running pid", async () => {
    const dir = freshDir();
    plant(lockPathFor("rebooted", dir), { bootId: randomUUID() });
    const { lock, ms, waited } = await acquireWithin("rebooted", { dir }, 5_000);
    expect(waited).toBe(false);
    expect(ms).toBeLessThan(2_000);
    lock.release();
  });

  it("another hostname (a shared lock directory): an unrenewed lease is broken once it has run out — by this process's clock, not the holder's", async () => {
    const dir = freshDir();
    // Written an hour ago by the other machine's clock: that clock is not comparable with ours, so
    // only a whole lease without a renewal, as seen from here, counts.
    plant(lockPathFor("remote", dir), {
      host: "build-2.elsewhere.example",
      bootId: randomUUID(),
      pidNamespace: "pid:[4026531836]",
      leaseMs: 600,
      renewedAt: Date.now() - 3_600_000,
    });
    const { lock, ms, waited } = await acquireWithin("remote", { dir }, 5_000);
    expect(waited).toBe(true);
    expect(ms).toBeGreaterThanOrEqual(550);
    expect(ms).toBeLessThan(3_000);
    lock.release();
  });

  it("another hostname with a renewed lease is waited for as long as the renewals go on, and broken one lease after they stop", async () => {
    const dir = freshDir();
    const path = lockPathFor("renewed", dir);
    const fields = { host: "build-3.elsewhere.example", bootId: randomUUID(), leaseMs: 1_500, nonce: randomUUID() };
    let renewals = 0;
    plant(path, { ...fields, renewals });
    const renewing = setInterval(() => plant(path, { ...fields, renewals: ++renewals }), 100);
    let stoppedAt = 0;
    try {
      const pending = acquireWithin("renewed", { dir }, 10_000);
      let got = false;
      void pending.then(
        () => (got = true),
        () => {},
      );
      await sleep(3_000); // two leases
      expect(got).toBe(false);
      clearInterval(renewing);
      stoppedAt = performance.now();
      const { lock, waited } = await pending;
      const afterStop = performance.now() - stoppedAt;
      expect(waited).toBe(true);
      expect(afterStop).toBeGreaterThanOrEqual(1_300);
      expect(afterStop).toBeLessThan(4_500);
      lock.release();
    } finally {
      clearInterval(renewing);
    }
  });

  it("another container on this kernel (other hostname, same boot id, same clock): a lease last renewed longer ago than it lasts is broken at once; a fresh one is waited for", async () => {
    const dir = freshDir();
    const container = { host: "3f2a9c1b7d0e", pidNamespace: "pid:[4026532999]", pid: 1, startTime: "19" };
    plant(lockPathFor("expired", dir), { ...container, leaseMs: 30_000, renewedAt: Date.now() - 120_000 });
    const { lock, ms, waited } = await acquireWithin("expired", { dir }, 5_000);
    expect(waited).toBe(false);
    expect(ms).toBeLessThan(2_000);
    lock.release();
    plant(lockPathFor("fresh", dir), { ...container, leaseMs: 30_000, renewedAt: Date.now() });
    await expect(acquireWithin("fresh", { dir }, 1_500)).rejects.toThrow(/still waiting/);
  });

  it("another pid namespace on this host (a container sharing the hostname): its pid means nothing here, so the lease decides, not the pid", async () => {
    const dir = freshDir();
    plant(lockPathFor("other-ns", dir), { pid: DEAD_PID, pidNamespace: "pid:[4026532001]", startTime: "12345", leaseMs: 600 });
    const { lock, ms, waited } = await acquireWithin("other-ns", { dir }, 5_000);
    expect(waited).toBe(true);
    expect(ms).toBeGreaterThanOrEqual(400); // a renewal time from this kernel's clock: what is left of the lease
    expect(ms).toBeLessThan(3_000);
    lock.release();
  });

  it("a holder renews its lease while it lives; killed with SIGKILL, its lock is broken at once, long before the lease runs out", async () => {
    const dir = freshDir();
    const child = spawn(process.execPath, ["--import", "tsx", join(import.meta.dirname, "fixtures/lock-holder.ts"), dir, "killed"], {
      cwd: join(import.meta.dirname, ".."),
      env: { ...process.env, KILN_LOCK_LEASE_MS: "6000" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
    try {
      const path = await new Promise<string>((resolve, reject) => {
        let out = "";
        const timer = setTimeout(() => reject(new Error("the holder did not take the lock within 20 s")), 20_000);
        child.stdout!.on("data", (chunk) => {
          out += chunk;
          const line = out.split("\n").find((l) => l.startsWith("{"));
          if (line) {
            clearTimeout(timer);
            resolve(JSON.parse(line).held);
          }
        });
      });
      const first = JSON.parse(readFileSync(path, "utf8"));
      expect(first).toMatchObject({
        pid: child.pid,
        startTime: startTimeOf(child.pid!),
        host: here.host,
        bootId: here.bootId,
        pidNamespace: here.pidNamespace,
        leaseMs: 6_000,
      });
      // Renewed every lease/3 (2 s): within 4 s the lock has been rewritten with a later time.
      const deadline = Date.now() + 4_000;
      let renewed = first;
      while (!(renewed.renewedAt > first.renewedAt) && Date.now() < deadline) {
        await sleep(50);
        renewed = JSON.parse(readFileSync(path, "utf8"));
      }
      expect(renewed.renewedAt).toBeGreaterThan(first.renewedAt);
      expect(renewed.nonce).toBe(first.nonce);

      const pending = acquireWithin("killed", { dir }, 10_000);
      void pending.catch(() => {});
      await sleep(500); // the live holder is waited for meanwhile
      expect(JSON.parse(readFileSync(path, "utf8")).nonce).toBe(first.nonce);
      child.kill("SIGKILL");
      await exited;
      const killedAt = performance.now();
      const { lock, waited } = await pending;
      expect(waited).toBe(true);
      expect(performance.now() - killedAt).toBeLessThan(2_500); // the lease (6 s) has nothing to do with it
      lock.release();
    } finally {
      child.kill("SIGKILL");
    }
  });
});

describe("our own lock", () => {
  it("is renewed through its own descriptor: a lock that replaced it is never written to, nor deleted by release; isHeld() tells", async () => {
    const dir = freshDir();
    const mine = await acquireImageLock("replaced", { dir, leaseMs: 150 });
    const first = JSON.parse(readFileSync(mine.path, "utf8"));
    await sleep(300);
    const renewed = JSON.parse(readFileSync(mine.path, "utf8"));
    expect(renewed.renewals).toBeGreaterThan(0);
    expect(renewed.renewedAt).toBeGreaterThan(first.renewedAt);
    expect(mine.isHeld()).toBe(true);
    // Someone broke it (wrongly) and took it: their file must stay exactly as they wrote it.
    rmSync(mine.path);
    const theirs = lockText({ pid: 1, startTime: "19", nonce: "theirs" });
    writeFileSync(mine.path, theirs, { mode: 0o600 });
    await sleep(300);
    expect(readFileSync(mine.path, "utf8")).toBe(theirs);
    expect(mine.isHeld()).toBe(false);
    mine.release();
    expect(readFileSync(mine.path, "utf8")).toBe(theirs);
  });
});

describe("lock files are never followed", () => {
  it("a lock file that is a symlink (here to a live holder's lock) is not followed: it is removed as stale, its target untouched", async () => {
    const dir = freshDir();
    const target = join(scratch, `elsewhere-${randomUUID()}.lock`);
    const live = lockText(); // this very process, with its real start time: followed, it would be waited on
    writeFileSync(target, live, { mode: 0o600 });
    symlinkSync(target, lockPathFor("linked", dir));
    const { lock, waited } = await acquireWithin("linked", { dir }, 5_000);
    expect(waited).toBe(false);
    expect(lstatSync(lock.path).isFile()).toBe(true);
    expect(readFileSync(target, "utf8")).toBe(live);
    lock.release();
    expect(readFileSync(target, "utf8")).toBe(live);
  });
});

/** Runs `fn` with these environment variables set (undefined: unset), restoring them afterwards. */
async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const apply = (values: Record<string, string | undefined>) => {
    for (const [k, v] of Object.entries(values)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
  apply(vars);
  try {
    return await fn();
  } finally {
    apply(saved);
  }
}

/** The directory is refused with a typed error naming it and why; nothing is written into it. */
async function expectRefused(dir: string, reason: RegExp, options: AcquireLockOptions = {}): Promise<void> {
  const before = existsSync(dir) ? readdirSync(dir) : [];
  const error = await acquireImageLock("refused", options).then(
    (lock) => {
      lock.release();
      return undefined;
    },
    (e: unknown) => e,
  );
  expect(error, `${dir} was used`).toMatchObject({ code: "KILN_UNSAFE_LOCK_DIR", name: "UnsafeLockDirectoryError" });
  const { message, hint } = error as { message: string; hint: string };
  expect(message).toContain(dir);
  expect(message).toMatch(reason);
  expect(hint).toMatch(/KILN_LOCK_DIR/);
  expect(existsSync(dir) ? readdirSync(dir) : []).toEqual(before);
}

describe("the lock directory is used only when it is this user's alone", () => {
  it("the default one in the shared temp dir: created 0700 when missing; another user's, mode 0777 or 0755, or a symlink is refused, never tightened", async () => {
    const tmp = join(scratch, "shared-tmp");
    mkdirSync(tmp, { mode: 0o1777 });
    chmodSync(tmp, 0o1777);
    await withEnv({ TMPDIR: tmp, XDG_RUNTIME_DIR: undefined, KILN_LOCK_DIR: undefined }, async () => {
      const dir = lockDirectory();
      expect(dir).toBe(join(tmp, `kiln-locks-${process.getuid!()}`));
      const lock = await acquireImageLock("default");
      expect(statSync(dir).mode & 0o7777).toBe(0o700);
      lock.release();

      chownSync(dir, NOBODY, NOBODY); // planted by `nobody`, even a private one
      await expectRefused(dir, new RegExp(`owned by uid ${NOBODY}, not by this user`));
      expect(statSync(dir).uid).toBe(NOBODY);
      chownSync(dir, 0, 0);

      chmodSync(dir, 0o777);
      await expectRefused(dir, /writable by group or others \(mode 0777\)/);
      expect(statSync(dir).mode & 0o777).toBe(0o777);

      chmodSync(dir, 0o755);
      await expectRefused(dir, /accessible by group or others \(mode 0755; expected 0700\)/);

      rmSync(dir, { recursive: true });
      const real = join(scratch, "private-elsewhere");
      mkdirSync(real, { mode: 0o700 });
      symlinkSync(real, dir);
      await expectRefused(dir, /is a symbolic link, not a directory/);
      expect(readdirSync(real)).toEqual([]);
    });
  });

  it("KILN_LOCK_DIR (or `dir`): another user's, writable by others, or a symlink is refused; readable by others is allowed", async () => {
    const dir = freshDir();
    await withEnv({ KILN_LOCK_DIR: dir }, async () => {
      chownSync(dir, NOBODY, NOBODY);
      await expectRefused(dir, /owned by uid 65534/);
      chownSync(dir, 0, 0);
      chmodSync(dir, 0o770);
      await expectRefused(dir, /writable by group or others \(mode 0770\)/);
      chmodSync(dir, 0o755); // e.g. a volume mounted for sharing locks between containers
      (await acquireImageLock("explicit")).release();
    });
    const linked = join(scratch, `linked-${randomUUID()}`);
    symlinkSync(freshDir(), linked);
    await expectRefused(linked, /symbolic link/, { dir: linked });
  });
});
