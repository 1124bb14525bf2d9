/**
 * A cross-process lock per image, so two processes on one machine build an image once: the second
 * waits, then re-runs the existence check and finds what the first pushed.
 *
 * The lock is a file created with O_EXCL (atomic on local filesystems) holding the holder's pid.
 * A lock whose holder is gone (pid not alive) is stale and broken — under a short "breaker" lock so
 * two waiters cannot both break it and then delete each other's fresh lock.
 * Directory: `$KILN_LOCK_DIR`, else `$XDG_RUNTIME_DIR/kiln-locks`, else `<os.tmpdir()>/kiln-locks-<uid>`
 * (per user: a shared tmp dir created 0700 by one user would lock every other user out).
 */
import { createHash, randomUUID } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { closeSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { CancelledError } from "./errors.js";

export interface LockHandle {
  path: string;
  /** True when another holder had to be waited for. */
  waited: boolean;
  release(): void;
}

export interface AcquireLockOptions {
  signal?: AbortSignal;
  /** Called once, when the lock is found held by another live process. */
  onWait?: (lockPath: string) => void;
  /** Poll interval while waiting (ms). */
  pollMs?: number;
  /** Overrides the lock directory (tests). */
  dir?: string;
}

interface LockContent {
  pid: number;
  host: string;
  nonce: string;
  key: string;
  createdAt: number;
}

const held = new Set<string>();
let exitHookInstalled = false;

export function lockDirectory(): string {
  if (process.env.KILN_LOCK_DIR) return process.env.KILN_LOCK_DIR;
  const runtime = process.env.XDG_RUNTIME_DIR;
  return runtime ? join(runtime, "kiln-locks") : join(tmpdir(), `kiln-locks-${process.getuid?.() ?? "user"}`);
}

export function lockPathFor(key: string, dir: string = lockDirectory()): string {
  return join(dir, `${createHash("sha256").update(key).digest("hex").slice(0, 32)}.lock`);
}

function tryCreate(path: string, content: LockContent): boolean {
  let fd: number;
  try {
    fd = openSync(path, "wx", 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  }
  try {
    writeSync(fd, JSON.stringify(content));
  } catch (error) {
    // A lock created but never written (e.g. the disk filled in between) would make the next run
    // wait for it to go stale: it is ours, so remove it.
    closeSync(fd);
    try { unlinkSync(path); } catch { /* already gone */ }
    throw error;
  }
  closeSync(fd);
  return true;
}

function readLock(path: string): { text: string; content?: LockContent } | undefined {
  try {
    const text = readFileSync(path, "utf8");
    try {
      return { text, content: JSON.parse(text) as LockContent };
    } catch {
      return { text };
    }
  } catch {
    return undefined; // gone meanwhile
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"; // exists, owned by someone else
  }
}

function ageMs(path: string): number {
  try {
    return Date.now() - statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}

/** Stale: the holder on this host is dead, or the file stayed empty/unparsable for 10 s. */
function isStale(path: string, lock: { text: string; content?: LockContent }): boolean {
  if (!lock.content || typeof lock.content.pid !== "number") return ageMs(path) > 10_000;
  if (lock.content.host !== hostname()) return false; // cannot tell for another host (shared tmp)
  return !pidAlive(lock.content.pid);
}

/** Removes a stale lock, unless someone replaced it meanwhile; false when another process is at it. */
function breakStale(path: string, observed: string): boolean {
  const breaker = `${path}.break`;
  const content: LockContent = { pid: process.pid, host: hostname(), nonce: randomUUID(), key: "breaker", createdAt: Date.now() };
  if (!tryCreate(breaker, content)) {
    if (ageMs(breaker) > 10_000) {
      try { unlinkSync(breaker); } catch { /* someone else did */ }
    }
    return false;
  }
  try {
    const current = readLock(path);
    if (current && current.text === observed) unlinkSync(path);
  } catch {
    // already gone
  } finally {
    try { unlinkSync(breaker); } catch { /* ignore */ }
  }
  return true;
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // A process that exits (normally or via process.exit after SIGINT) leaves no lock behind.
  process.once("exit", () => {
    for (const path of held) {
      try { unlinkSync(path); } catch { /* ignore */ }
    }
  });
}

async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  try {
    await delay(ms, undefined, signal ? { signal } : {});
  } catch {
    throw new CancelledError("Cancelled while waiting for a build lock");
  }
}

/** Takes the lock for `key`, waiting while a live process holds it. */
export async function acquireImageLock(key: string, options: AcquireLockOptions = {}): Promise<LockHandle> {
  const dir = options.dir ?? lockDirectory();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = lockPathFor(key, dir);
  const content: LockContent = { pid: process.pid, host: hostname(), nonce: randomUUID(), key, createdAt: Date.now() };
  let waited = false;
  for (;;) {
    if (options.signal?.aborted) throw new CancelledError("Cancelled while waiting for a build lock");
    if (tryCreate(path, content)) break;
    const current = readLock(path);
    if (!current) continue; // released between our attempt and the read
    if (isStale(path, current)) {
      // Another process breaking the same stale lock (or one that died doing so): wait, never spin.
      if (!breakStale(path, current.text)) await sleep(options.pollMs ?? 100, options.signal);
      continue;
    }
    if (!waited) {
      waited = true;
      options.onWait?.(path);
    }
    await sleep(options.pollMs ?? 100, options.signal);
  }
  installExitHook();
  held.add(path);
  let released = false;
  return {
    path,
    waited,
    release() {
      if (released) return;
      released = true;
      held.delete(path);
      const current = readLock(path);
      if (current?.content?.nonce === content.nonce) {
        try { unlinkSync(path); } catch { /* ignore */ }
      }
    },
  };
}
