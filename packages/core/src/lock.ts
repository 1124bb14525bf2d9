/**
 * A cross-process lock per image, so two processes build an image once: the second waits, then
 * re-runs the existence check and finds what the first pushed.
 *
 * The lock is a file created with O_EXCL (atomic on local filesystems) naming its holder (pid,
 * hostname, boot id, pid namespace, process start time — lockHolder.ts) and carrying a lease: the
 * holder rewrites it every lease/3 (an unref'd timer, through the descriptor it created it with, so
 * it never writes into someone else's lock). A lock is broken when its holder is known to be gone
 * (pid not running, pid reused, machine rebooted), and otherwise — another host, another pid
 * namespace, no start time to compare — when its lease expired: not renewed for the lease's
 * duration, by this process's own clock (so clocks of other hosts do not matter), or at once when
 * the holder shares this kernel (same boot id, same clock) and its last renewal is older than that.
 * Breaking happens under a short "breaker" lock and only if the file is still the one judged stale,
 * so two waiters cannot both break it and then delete each other's fresh lock; release (and the
 * exit hook) delete the file only while it is still this holder's own (same inode and nonce).
 *
 * Lease: `leaseMs` option, else `KILN_LOCK_LEASE_MS`, else 30 s; a waiter honours the lease the
 * holder wrote. Directory: `$KILN_LOCK_DIR`, else `$XDG_RUNTIME_DIR/kiln-locks`, else
 * `<os.tmpdir()>/kiln-locks-<uid>`. A default directory is used only when it is a real directory
 * owned by this user with no group/other permissions (0700) — one planted in the shared temp dir
 * by another user could block builds or feed them locks; an explicit one (KILN_LOCK_DIR, `dir`)
 * must be a real directory of this user's that nobody else can write. Otherwise acquiring fails
 * with UnsafeLockDirectoryError: Kiln never tightens or reuses a directory someone else made.
 * Lock files are opened without following symlinks; an entry that is not a regular file of this
 * user's is never read as a lock and is removed as stale.
 */
import { createHash, randomUUID } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { closeSync, constants, fstatSync, lstatSync, openSync, readSync, unlinkSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CancelledError, ConfigError, UnsafeLockDirectoryError } from "./errors.js";
import { currentHolder, holderState, sharesKernel, type HolderIdentity } from "./lockHolder.js";
import { NO_FOLLOW_READ, ownershipProblem, preparePrivateDirectory } from "./privateDir.js";

export interface LockHandle {
  path: string;
  /** True when another holder had to be waited for. */
  waited: boolean;
  /** True while the file at `path` is still this lock (not released, nor broken and replaced by another process). */
  isHeld(): boolean;
  release(): void;
}

export interface AcquireLockOptions {
  signal?: AbortSignal;
  /** Called once, when the lock is found held by another live process. */
  onWait?: (lockPath: string) => void;
  /** Poll interval while waiting (ms). */
  pollMs?: number;
  /** Overrides the lock directory (tests); checked like KILN_LOCK_DIR. */
  dir?: string;
  /** This holder's lease (ms); default KILN_LOCK_LEASE_MS, else 30 s. */
  leaseMs?: number;
}

export const DEFAULT_LOCK_LEASE_MS = 30_000;
/** Bounds for a lease, ours or one a lock declares (an absurd one would make a dead remote lock last for ever). */
const MIN_LEASE_MS = 100;
const MAX_LEASE_MS = 60 * 60 * 1000;
/** A lock file that stayed unparsable (a holder died between create and write) this long is stale. */
const UNPARSABLE_GRACE_MS = 10_000;
/** A breaker lock held this long belongs to a process that died while breaking. */
const BREAKER_STALE_MS = 10_000;
const MAX_LOCK_BYTES = 64 * 1024;
/** Room for the renewal counter and time to grow without the file ever having to shrink. */
const RENEWAL_SLACK = 32;

interface LockContent extends HolderIdentity {
  version: 2;
  nonce: string;
  key: string;
  createdAt: number;
  /** When the holder last renewed the lease (its wall clock). */
  renewedAt: number;
  renewals: number;
  leaseMs: number;
}

/** What is at the lock path now; `id` changes whenever the file is replaced or rewritten. */
type Observed =
  | { kind: "lock"; id: string; dev: number; ino: number; mtimeMs: number; content?: LockContent }
  /** A symlink, FIFO, directory, someone else's file…: never read as a lock, removed as stale. */
  | { kind: "foreign"; id: string };

interface HeldLock {
  path: string;
  fd: number;
  content: LockContent;
  size: number;
  timer?: ReturnType<typeof setInterval>;
}

const held = new Set<HeldLock>();
let exitHookInstalled = false;

export function lockDirectory(): string {
  if (process.env.KILN_LOCK_DIR) return process.env.KILN_LOCK_DIR;
  const runtime = process.env.XDG_RUNTIME_DIR;
  return runtime ? join(runtime, "kiln-locks") : join(tmpdir(), `kiln-locks-${process.getuid?.() ?? "user"}`);
}

export function lockPathFor(key: string, dir: string = lockDirectory()): string {
  return join(dir, `${createHash("sha256").update(key).digest("hex").slice(0, 32)}.lock`);
}

/** The lease this process holds locks with: `leaseMs`, else KILN_LOCK_LEASE_MS, else 30 s. */
export function lockLeaseMs(leaseMs?: number): number {
  if (leaseMs !== undefined) return clampLease(leaseMs) ?? DEFAULT_LOCK_LEASE_MS;
  const fromEnv = process.env.KILN_LOCK_LEASE_MS;
  if (fromEnv === undefined || fromEnv === "") return DEFAULT_LOCK_LEASE_MS;
  const value = /^\d+$/.test(fromEnv) ? Number(fromEnv) : NaN;
  if (!(value >= MIN_LEASE_MS && value <= MAX_LEASE_MS)) {
    throw new ConfigError(`Invalid KILN_LOCK_LEASE_MS ${JSON.stringify(fromEnv)}: expected milliseconds between ${MIN_LEASE_MS} and ${MAX_LEASE_MS}`, {
      hint: `Unset KILN_LOCK_LEASE_MS (default ${DEFAULT_LOCK_LEASE_MS} ms) or set it to a whole number of milliseconds.`,
    });
  }
  return value;
}

function clampLease(value: unknown): number | undefined {
  return typeof value === "number" && Number.isFinite(value) ? Math.min(MAX_LEASE_MS, Math.max(MIN_LEASE_MS, value)) : undefined;
}

/** The lock directory, created if missing and checked (see the file comment); throws UnsafeLockDirectoryError. */
function useLockDirectory(dir: string, explicit: boolean): void {
  const problem = preparePrivateDirectory(dir, { forbiddenModeBits: explicit ? 0o022 : 0o077 });
  if (!problem) return;
  throw new UnsafeLockDirectoryError(`Kiln will not use ${dir} for build locks: ${problem}`, {
    hint: explicit
      ? `Point KILN_LOCK_DIR at a directory owned by you that nobody else can write to (e.g. mode 0700).`
      : `Another user may have created it to block or interfere with your builds. Remove ${dir} if it is not yours to keep, or set KILN_LOCK_DIR to a private directory (owned by you, mode 0700).`,
    details: { lockDir: dir, reason: problem },
  });
}

/** The lock's JSON padded with spaces (JSON allows them) to at least `size` bytes, so a rewrite never leaves a stale tail. */
function serialize(content: LockContent, size = 0): Buffer {
  const json = Buffer.from(JSON.stringify(content));
  return json.length >= size ? json : Buffer.concat([json, Buffer.alloc(size - json.length, " ")]);
}

/** Creates the file exclusively (never through a symlink) and writes it whole; the descriptor, or undefined when it exists. */
function createExclusive(path: string, data: Buffer): number | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | (constants.O_NOFOLLOW ?? 0), 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return undefined;
    throw error;
  }
  try {
    writeAll(fd, data);
    return fd;
  } catch (error) {
    // A lock created but never written (e.g. the disk filled in between) would make the next run
    // wait for it to go stale: it is ours, so remove it.
    closeSync(fd);
    try {
      unlinkSync(path);
    } catch {
      /* already gone */
    }
    throw error;
  }
}

function writeAll(fd: number, data: Buffer): void {
  let written = 0;
  while (written < data.length) written += writeSync(fd, data, written, data.length - written, written);
}

function parseLock(text: string): LockContent | undefined {
  let value: Partial<LockContent>;
  try {
    value = JSON.parse(text) as Partial<LockContent>;
  } catch {
    return undefined;
  }
  if (!value || typeof value !== "object") return undefined;
  if (!Number.isSafeInteger(value.pid) || value.pid! <= 0 || typeof value.host !== "string" || typeof value.nonce !== "string") return undefined;
  const content = { ...value } as LockContent;
  // Optional facts of a wrong type (or a lock from an older Kiln without them) count as unknown.
  for (const field of ["bootId", "pidNamespace", "startTime"] as const) if (typeof content[field] !== "string") delete content[field];
  return content;
}

/** What is at `path`, read without following a symlink or blocking on a FIFO; undefined when nothing is. */
function observe(path: string): Observed | undefined {
  let fd: number;
  try {
    fd = openSync(path, NO_FOLLOW_READ);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined;
    return foreign(path); // ELOOP: a symlink, never followed
  }
  try {
    const stats = fstatSync(fd);
    const id = `${stats.dev}:${stats.ino}`;
    if (!stats.isFile() || ownershipProblem(path, stats) || stats.size > MAX_LOCK_BYTES) return { kind: "foreign", id };
    const buffer = Buffer.alloc(stats.size);
    const length = stats.size === 0 ? 0 : readSync(fd, buffer, 0, buffer.length, 0);
    const text = buffer.subarray(0, length).toString("utf8");
    const content = parseLock(text);
    return { kind: "lock", id: `${id}:${text}`, dev: stats.dev, ino: stats.ino, mtimeMs: stats.mtimeMs, ...(content ? { content } : {}) };
  } finally {
    closeSync(fd);
  }
}

function foreign(path: string): Observed | undefined {
  try {
    const stats = lstatSync(path);
    return { kind: "foreign", id: `${stats.dev}:${stats.ino}` };
  } catch {
    return undefined; // gone meanwhile
  }
}

/** How long the lock at the path has looked exactly the same to this process (its own monotonic clock). */
interface Sighting {
  id: string;
  since: number;
}

function sighting(previous: Sighting | undefined, observed: Observed): Sighting {
  return previous?.id === observed.id ? previous : { id: observed.id, since: performance.now() };
}

/** True when the observed lock may be broken (see the file comment). */
function isStale(observed: Observed, seen: Sighting, ownLeaseMs: number): boolean {
  if (observed.kind === "foreign") return true; // never ours to wait on
  const content = observed.content;
  if (!content) return Date.now() - observed.mtimeMs > UNPARSABLE_GRACE_MS;
  const state = holderState(content);
  if (state !== "unknown") return state === "dead";
  const leaseMs = clampLease(content.leaseMs) ?? ownLeaseMs;
  if (performance.now() - seen.since > leaseMs) return true; // not renewed for a whole lease
  const renewedAt = typeof content.renewedAt === "number" ? content.renewedAt : content.createdAt;
  return sharesKernel(content) && typeof renewedAt === "number" && Date.now() - renewedAt > leaseMs;
}

/** Our own short-lived lock on `path`'s breaker; undefined when another process holds it. */
function takeBreaker(path: string): { release(): void } | undefined {
  const breaker = `${path}.break`;
  const content = lockContent("breaker", DEFAULT_LOCK_LEASE_MS);
  const fd = createExclusive(breaker, serialize(content));
  if (fd === undefined) {
    // Left by a process that died while breaking: remove it so the next attempt can go ahead.
    const other = observe(breaker);
    const abandoned =
      other?.kind === "foreign" ||
      (other?.kind === "lock" && (Date.now() - other.mtimeMs > BREAKER_STALE_MS || (other.content !== undefined && holderState(other.content) === "dead")));
    if (abandoned) removeIfStill(breaker, other!.id);
    return undefined;
  }
  const ours = fstatSync(fd);
  return {
    release() {
      const now = observe(breaker);
      if (now?.kind === "lock" && now.dev === ours.dev && now.ino === ours.ino) {
        try {
          unlinkSync(breaker);
        } catch {
          /* already gone */
        }
      }
      closeSync(fd);
    },
  };
}

/** Deletes `path` if it is still what was observed; an entry that cannot be deleted (a directory, a read-only dir) throws, never loops. */
function removeIfStill(path: string, id: string): void {
  if (observe(path)?.id !== id) return;
  try {
    unlinkSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
}

/** Removes a stale lock unless it changed since it was judged; false when another process is at it. */
function breakStale(path: string, observedId: string): boolean {
  const breaker = takeBreaker(path);
  if (!breaker) return false;
  try {
    removeIfStill(path, observedId);
  } finally {
    breaker.release();
  }
  return true;
}

function lockContent(key: string, leaseMs: number): LockContent {
  const now = Date.now();
  return { version: 2, ...currentHolder(), nonce: randomUUID(), key, createdAt: now, renewedAt: now, renewals: 0, leaseMs };
}

/** Rewrites the lock in place through our own descriptor: a lock that was broken and replaced meanwhile is never touched. */
function renew(lock: HeldLock): void {
  lock.content.renewedAt = Date.now();
  lock.content.renewals++;
  const data = serialize(lock.content, lock.size);
  try {
    writeAll(lock.fd, data);
    lock.size = data.length;
  } catch {
    // A full disk or a vanished mount: the next tick tries again; waiters fall back to the lease.
  }
}

/** The lock file at the path is the one we created and still names us. */
function stillOurs(lock: HeldLock): boolean {
  try {
    const ours = fstatSync(lock.fd);
    const current = observe(lock.path);
    return current?.kind === "lock" && current.dev === ours.dev && current.ino === ours.ino && current.content?.nonce === lock.content.nonce;
  } catch {
    return false;
  }
}

/** Deletes the lock file only while it is still ours (same inode, same nonce); under the breaker when it is free. */
function removeIfOurs(lock: HeldLock): void {
  let breaker: ReturnType<typeof takeBreaker>;
  try {
    breaker = takeBreaker(lock.path);
  } catch {
    breaker = undefined; // e.g. the disk is full: still remove our own lock
  }
  try {
    if (stillOurs(lock)) unlinkSync(lock.path);
  } catch {
    // already gone
  } finally {
    breaker?.release();
  }
}

function forget(lock: HeldLock): void {
  if (lock.timer) clearInterval(lock.timer);
  held.delete(lock);
  removeIfOurs(lock);
  try {
    closeSync(lock.fd);
  } catch {
    /* already closed */
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // A process that exits (normally or via process.exit after SIGINT) leaves no lock behind.
  process.once("exit", () => {
    for (const lock of [...held]) forget(lock);
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
  useLockDirectory(dir, options.dir !== undefined || Boolean(process.env.KILN_LOCK_DIR));
  const leaseMs = lockLeaseMs(options.leaseMs);
  const path = lockPathFor(key, dir);
  const pollMs = options.pollMs ?? 100;
  let waited = false;
  let seen: Sighting | undefined;
  let lock: HeldLock | undefined;
  while (!lock) {
    if (options.signal?.aborted) throw new CancelledError("Cancelled while waiting for a build lock");
    const content = lockContent(key, leaseMs);
    const data = serialize(content, Buffer.byteLength(JSON.stringify(content)) + RENEWAL_SLACK);
    const fd = createExclusive(path, data);
    if (fd !== undefined) {
      lock = { path, fd, content, size: data.length };
      break;
    }
    const current = observe(path);
    if (!current) continue; // released between our attempt and the read
    seen = sighting(seen, current);
    if (isStale(current, seen, leaseMs)) {
      // Another process breaking the same stale lock (or one that died doing so): wait, never spin.
      if (!breakStale(path, current.id)) await sleep(pollMs, options.signal);
      continue;
    }
    if (!waited) {
      waited = true;
      options.onWait?.(path);
    }
    await sleep(pollMs, options.signal);
  }
  const taken = lock;
  installExitHook();
  held.add(taken);
  taken.timer = setInterval(() => renew(taken), Math.max(10, Math.floor(leaseMs / 3)));
  taken.timer.unref();
  let released = false;
  return {
    path,
    waited,
    isHeld: () => !released && stillOurs(taken),
    release() {
      if (released) return;
      released = true;
      forget(taken);
    },
  };
}
