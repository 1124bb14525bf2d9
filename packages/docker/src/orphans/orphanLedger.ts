/**
 * Kiln's own list of build step containers it may have left on a daemon: a classic-builder step
 * container whose build ended because the daemon went away (dockerd killed mid-`RUN`) outlives the
 * daemon, and nobody else knows it belongs to a dead build. The next build against the same
 * endpoint removes exactly these (orphanContainers.ts) — never anything found by a pattern.
 *
 * One small file per record in a per-user directory beside Kiln's build locks (`<lock dir>/
 * orphan-containers`), rather than one shared file: a writer never read-modify-writes anything, so
 * concurrent processes cannot lose each other's records and need no lock. Each file is written whole
 * under a temp name and renamed into place (atomic), mode 0600 in a 0700 directory. A file that does
 * not parse or validate is deleted, never trusted; files of other endpoints are never opened.
 *
 * A record names a container Kiln will force-remove, so only records nobody else can have written
 * count. Without XDG_RUNTIME_DIR the directory sits in the shared /tmp, where another local user can
 * create it first (`mkdir` with `recursive` neither fails nor tightens an existing directory). So
 * before any read or write the directory and its parent (the lock directory) must be real
 * directories (no symlink) owned by this user and writable by nobody else — else the ledger is not
 * used at all — and each record file must be a regular file (opened with O_NOFOLLOW) owned by this
 * user and writable by nobody else — else it is ignored, never followed, trusted or deleted.
 * These checks are @kiln/core's (`directoryProblem`, `readOwnRegularFile`), shared with its build locks.
 */
import { createHash, randomUUID } from "node:crypto";
import { lstatSync, mkdirSync, readdirSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { directoryProblem as unsafeDirectory, lockDirectory, readOwnRegularFile } from "@kiln/core/plugin";

export interface OrphanRecord {
  /** The container ID as the classic builder printed it (12 hex) or in full (64 hex). */
  containerId: string;
  /** The daemon it lives on (DockerConnection.endpoint). */
  endpoint: string;
  /** When Kiln recorded it (ms since the epoch): the container existed by then. */
  recordedAt: number;
  /** When the build that started it began (ms since the epoch): the container cannot be older. */
  buildStartedAt: number;
  /** The image whose build left it, for the warning. */
  image?: string;
}

const CONTAINER_ID = /^[0-9a-f]{12,64}$/;
/** Version 2 added buildStartedAt; a record without it cannot be checked against its container and is dropped. */
const RECORD_VERSION = 2;
/** A temp file a crashed writer left: surely not being written any more after this long. */
const STALE_TEMP_MS = 60 * 60 * 1000;

/** `$KILN_LOCK_DIR/orphan-containers` (from `env`, else Kiln's lock directory) — per user, like the locks. */
export function orphanDirectory(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.KILN_LOCK_DIR || lockDirectory(), "orphan-containers");
}

export class OrphanLedger {
  /** Records this instance has written (a builder sweeps again after its own builds recorded one). */
  writes = 0;

  constructor(readonly dir: string = orphanDirectory()) {}

  /**
   * Adds (or refreshes) one record; throws on a file-system failure or, recording nothing, when the
   * directory fails `unsafeReason()` (UnsafeOrphanDirectoryError) — the caller decides.
   */
  record(record: OrphanRecord): void {
    if (!CONTAINER_ID.test(record.containerId)) throw new TypeError(`Not a container ID: ${JSON.stringify(record.containerId)}`);
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const problem = this.unsafeReason();
    if (problem) throw new UnsafeOrphanDirectoryError(problem);
    const final = this.pathOf(record.endpoint, record.containerId);
    const temp = `${final}.${process.pid}-${randomUUID().slice(0, 8)}.tmp`;
    try {
      // "wx": O_EXCL never follows or reuses anything already at the temp name.
      writeFileSync(temp, JSON.stringify({ version: RECORD_VERSION, ...record }), { mode: 0o600, flag: "wx" });
      renameSync(temp, final);
      this.writes++;
    } catch (error) {
      removeQuietly(temp);
      throw error;
    }
  }

  /**
   * Why this directory must not be used (someone else's, a symlink, writable by others — see the
   * file comment), or `undefined` when it is safe to use or does not exist yet.
   */
  unsafeReason(): string | undefined {
    const own = unsafeDirectory(this.dir);
    if (own !== undefined) return own ?? undefined; // null: no directory yet, so nothing to trust or not
    const parent = unsafeDirectory(dirname(this.dir));
    return parent === null ? `${dirname(this.dir)} does not exist` : parent;
  }

  /**
   * The records for one endpoint (cheap when there are none: one directory read). Corrupt ones are
   * deleted; none at all from a directory that fails `unsafeReason()`.
   */
  list(endpoint: string): OrphanRecord[] {
    if (this.unsafeReason()) return [];
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return []; // no directory yet: nothing was ever recorded
    }
    const prefix = `${endpointKey(endpoint)}-`;
    const records: OrphanRecord[] = [];
    for (const name of names) {
      if (!name.startsWith(prefix)) continue; // another endpoint's: not ours to read or touch
      const path = join(this.dir, name);
      if (name.endsWith(".tmp")) {
        if (ageMs(path) > STALE_TEMP_MS) removeQuietly(path);
        continue;
      }
      if (!name.endsWith(".json")) continue;
      const record = parseRecord(path, endpoint, name.slice(prefix.length, -".json".length));
      if (record) records.push(record);
      else if (record === null) removeQuietly(path);
    }
    return records.sort((a, b) => a.recordedAt - b.recordedAt);
  }

  /** Forgets one record (already gone is fine; never touches a directory that fails `unsafeReason()`). */
  drop(endpoint: string, containerId: string): void {
    if (this.unsafeReason()) return;
    removeQuietly(this.pathOf(endpoint, containerId));
  }

  private pathOf(endpoint: string, containerId: string): string {
    return join(this.dir, `${endpointKey(endpoint)}-${containerId}.json`);
  }
}

/** The ledger directory failed its safety check: nothing was recorded. */
export class UnsafeOrphanDirectoryError extends Error {
  override name = "UnsafeOrphanDirectoryError";
}

/** A short, file-name-safe key per endpoint; the full endpoint inside the record guards against collisions. */
function endpointKey(endpoint: string): string {
  return createHash("sha256").update(endpoint).digest("hex").slice(0, 16);
}

/** The record, `null` when the file is corrupt (delete it), `undefined` when it vanished or is another endpoint's. */
function parseRecord(path: string, endpoint: string, idFromName: string): OrphanRecord | null | undefined {
  const text = readOwnRegularFile(path);
  if (text === undefined) return undefined; // vanished, or not a file of ours: ignored, never deleted
  let value: Partial<OrphanRecord> & { version?: unknown };
  try {
    value = JSON.parse(text) as typeof value;
  } catch {
    return null;
  }
  if (!value || typeof value !== "object" || value.version !== RECORD_VERSION) return null;
  if (typeof value.containerId !== "string" || !CONTAINER_ID.test(value.containerId) || value.containerId !== idFromName) return null;
  if (typeof value.recordedAt !== "number" || !Number.isFinite(value.recordedAt)) return null;
  if (typeof value.buildStartedAt !== "number" || !Number.isFinite(value.buildStartedAt) || value.buildStartedAt > value.recordedAt) return null;
  if (value.endpoint !== endpoint) return typeof value.endpoint === "string" ? undefined : null; // a key collision: leave it be
  return {
    containerId: value.containerId,
    endpoint,
    recordedAt: value.recordedAt,
    buildStartedAt: value.buildStartedAt,
    ...(typeof value.image === "string" ? { image: value.image } : {}),
  };
}

function ageMs(path: string): number {
  try {
    return Date.now() - lstatSync(path).mtimeMs;
  } catch {
    return 0;
  }
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}
