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
 */
import { createHash, randomUUID } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { lockDirectory } from "@kiln/core";

export interface OrphanRecord {
  /** The container ID as the classic builder printed it (12 hex) or in full (64 hex). */
  containerId: string;
  /** The daemon it lives on (DockerConnection.endpoint). */
  endpoint: string;
  /** When Kiln recorded it (ms since the epoch): the container existed by then. */
  recordedAt: number;
  /** The image whose build left it, for the warning. */
  image?: string;
}

const CONTAINER_ID = /^[0-9a-f]{12,64}$/;
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

  /** Adds (or refreshes) one record; throws only on a file-system failure (the caller decides). */
  record(record: OrphanRecord): void {
    if (!CONTAINER_ID.test(record.containerId)) throw new TypeError(`Not a container ID: ${JSON.stringify(record.containerId)}`);
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const final = this.pathOf(record.endpoint, record.containerId);
    const temp = `${final}.${process.pid}-${randomUUID().slice(0, 8)}.tmp`;
    try {
      writeFileSync(temp, JSON.stringify({ version: 1, ...record }), { mode: 0o600, flag: "wx" });
      renameSync(temp, final);
      this.writes++;
    } catch (error) {
      removeQuietly(temp);
      throw error;
    }
  }

  /** The records for one endpoint (cheap when there are none: one directory read). Corrupt ones are deleted. */
  list(endpoint: string): OrphanRecord[] {
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

  /** Forgets one record (already gone is fine). */
  drop(endpoint: string, containerId: string): void {
    removeQuietly(this.pathOf(endpoint, containerId));
  }

  private pathOf(endpoint: string, containerId: string): string {
    return join(this.dir, `${endpointKey(endpoint)}-${containerId}.json`);
  }
}

/** A short, file-name-safe key per endpoint; the full endpoint inside the record guards against collisions. */
function endpointKey(endpoint: string): string {
  return createHash("sha256").update(endpoint).digest("hex").slice(0, 16);
}

/** The record, `null` when the file is corrupt (delete it), `undefined` when it vanished or is another endpoint's. */
function parseRecord(path: string, endpoint: string, idFromName: string): OrphanRecord | null | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return undefined; // dropped by another process meanwhile
  }
  let value: Partial<OrphanRecord> & { version?: unknown };
  try {
    value = JSON.parse(text) as typeof value;
  } catch {
    return null;
  }
  if (!value || typeof value !== "object" || value.version !== 1) return null;
  if (typeof value.containerId !== "string" || !CONTAINER_ID.test(value.containerId) || value.containerId !== idFromName) return null;
  if (typeof value.recordedAt !== "number" || !Number.isFinite(value.recordedAt)) return null;
  if (value.endpoint !== endpoint) return typeof value.endpoint === "string" ? undefined : null; // a key collision: leave it be
  return { containerId: value.containerId, endpoint, recordedAt: value.recordedAt, ...(typeof value.image === "string" ? { image: value.image } : {}) };
}

function ageMs(path: string): number {
  try {
    return Date.now() - statSync(path).mtimeMs;
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
