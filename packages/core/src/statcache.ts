/**
 * A stat cache for file digests: (path, size, mtime, ctime, inode, device) → sha256 of the
 * contents, kept in memory and persisted to `$XDG_CACHE_HOME/kiln/hash-cache-v2.bin` (default
 * `~/.cache/kiln/…`; `KILN_HASH_CACHE=<file>` moves it, `KILN_HASH_CACHE=off` disables persistence).
 *
 * Safe under concurrent processes: the file is replaced atomically (temp file + rename) and merged
 * with what another process wrote since we read it; a lost update only costs a re-hash.
 * Racy entries are never stored: a file modified in the last two seconds may change again within the
 * filesystem's timestamp granularity without its stat changing, so it is hashed again next time.
 */
import { mkdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { hasRawBytes } from "./rawNames.js";

/** Stat fields as plain numbers: bigint stats cost twice as much on the hot path, and sub-microsecond
 * precision of the double mtime/ctime in milliseconds is enough next to the racy-window rule. */
export interface StatIdentity {
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
  dev: number;
}

const FORMAT_VERSION = 2;
const RACY_WINDOW_MS = 2_000;
/** Above this many entries, a save keeps only the entries this process used. */
const MAX_ENTRIES = 400_000;
/** The file: MAGIC, u32 count, u32 path bytes, then count×5 float64 stats (size, mtimeMs, ctimeMs,
 * ino, dev), count×32 digest bytes, and the paths as NUL-separated UTF-8. Loading is a typed-array
 * view plus one string split — no parsing per entry. */
const MAGIC = Buffer.from("KILNHC02", "latin1");
const HEADER_BYTES = 16; // magic + count + path bytes; keeps the float64 table 8-byte aligned
const FIELDS = 5;
const DIGEST_BYTES = 32;

/** Flat, growable storage: a warm lookup is one string comparison (or one map get) and five number
 * comparisons, with no allocation. */
class Table {
  paths: string[] = [];
  stats: Float64Array = new Float64Array(1024 * FIELDS);
  digests: Buffer = Buffer.alloc(1024 * DIGEST_BYTES);
  /** Entries this process looked up or stored (a save over MAX_ENTRIES keeps only these). */
  used = new Uint8Array(1024);
  /** path → row; built on the first lookup that the cursor does not answer. */
  private index: Map<string, number> | undefined;
  /** The row after the last one found: lookups come in walk order, which is the order rows were
   * stored in, so on an unchanged tree the next row is the one asked for and the map is never built. */
  private cursor = 0;

  /** Takes the loaded arrays as they are (no per-entry copy). */
  static adopt(paths: string[], stats: Float64Array, digests: Buffer): Table {
    const table = new Table();
    table.paths = paths;
    table.stats = stats;
    table.digests = digests;
    table.used = new Uint8Array(paths.length);
    return table;
  }

  get count(): number {
    return this.paths.length;
  }

  find(path: string): number {
    const next = this.cursor;
    if (next < this.paths.length && this.paths[next] === path) {
      this.cursor = next + 1;
      return next;
    }
    const i = this.map().get(path);
    if (i === undefined) return -1;
    this.cursor = i + 1;
    return i;
  }

  private map(): Map<string, number> {
    if (this.index === undefined) {
      const index = new Map<string, number>();
      const paths = this.paths;
      for (let i = 0; i < paths.length; i++) index.set(paths[i]!, i);
      this.index = index;
    }
    return this.index;
  }

  put(path: string, stats: ArrayLike<number>, offset: number, digest: Buffer, digestOffset: number): number {
    let i = this.find(path);
    if (i === -1) {
      i = this.paths.length;
      this.paths.push(path);
      this.map().set(path, i);
      if ((i + 1) * FIELDS > this.stats.length) this.grow(Math.max(1024, (i + 1) * 2));
    }
    for (let f = 0; f < FIELDS; f++) this.stats[i * FIELDS + f] = stats[offset + f]!;
    digest.copy(this.digests, i * DIGEST_BYTES, digestOffset, digestOffset + DIGEST_BYTES);
    return i;
  }

  private grow(rows: number): void {
    const stats = new Float64Array(rows * FIELDS);
    stats.set(this.stats);
    this.stats = stats;
    const digests = Buffer.alloc(rows * DIGEST_BYTES);
    this.digests.copy(digests);
    this.digests = digests;
    const used = new Uint8Array(rows);
    used.set(this.used);
    this.used = used;
  }
}

/** Two lowercase hex characters (as char codes, high byte first) per byte value. */
const HEX_PAIRS = (() => {
  const digits = "0123456789abcdef";
  const pairs = new Uint16Array(256);
  for (let b = 0; b < 256; b++) pairs[b] = (digits.charCodeAt(b >> 4) << 8) | digits.charCodeAt(b & 15);
  return pairs;
})();

export class FileDigestCache {
  private table = new Table();
  private loaded = false;
  private dirty = false;
  private loadedMtimeMs = -1;

  /** `file`: where to persist; undefined keeps the cache in memory only. */
  constructor(readonly file: string | undefined) {}

  /** The sha256 hex digest recorded for `path` with exactly this stat identity, if any. */
  get(path: string, id: StatIdentity): string | undefined {
    const i = this.lookup(path, id);
    return i === -1 ? undefined : this.table.digests.toString("hex", i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES);
  }

  /** The row recorded for `path` with exactly this stat identity, or -1. With `writeHex`, the
   * allocation-free form of `get` that the tree digest uses. */
  lookup(path: string, id: StatIdentity): number {
    if (!this.loaded) this.load();
    const table = this.table;
    const i = table.find(path);
    if (i === -1) return -1;
    const s = table.stats;
    const o = i * FIELDS;
    if (s[o] !== id.size || s[o + 1] !== id.mtimeMs || s[o + 2] !== id.ctimeMs || s[o + 3] !== id.ino || s[o + 4] !== id.dev) return -1;
    table.used[i] = 1;
    return i;
  }

  /** Writes the 64 lowercase hex characters of row `i`'s digest (from `lookup`) at `target[offset]`. */
  writeHex(i: number, target: Buffer, offset: number): void {
    const digests = this.table.digests;
    for (let b = i * DIGEST_BYTES, end = b + DIGEST_BYTES; b < end; b++) {
      const pair = HEX_PAIRS[digests[b]!]!;
      target[offset++] = pair >> 8;
      target[offset++] = pair & 0xff;
    }
  }

  /** A copy of the 32 digest bytes of row `i` (from `lookup`). */
  digestBytes(i: number): Buffer {
    const out = Buffer.allocUnsafe(DIGEST_BYTES);
    this.table.digests.copy(out, 0, i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES);
    return out;
  }

  /** Drops what is known of `path` (a digest found not to match the file), and saves. */
  forget(path: string): void {
    if (!this.loaded) this.load();
    const i = this.table.find(path);
    if (i === -1) return;
    this.table.stats.fill(Number.NaN, i * FIELDS, (i + 1) * FIELDS); // NaN never equals a stat
    this.dirty = true;
    this.save();
  }

  set(path: string, id: StatIdentity, digest: string): void {
    // A name that is not UTF-8 (rawNames.ts) would not survive the file's UTF-8 path list: not kept.
    if (id.mtimeMs > Date.now() - RACY_WINDOW_MS || !/^[0-9a-f]{64}$/.test(digest) || path.includes("\0") || hasRawBytes(path)) return;
    if (!this.loaded) this.load();
    const i = this.table.put(path, [id.size, id.mtimeMs, id.ctimeMs, id.ino, id.dev], 0, Buffer.from(digest, "hex"), 0);
    this.table.used[i] = 1;
    this.dirty = true;
  }

  get size(): number {
    if (!this.loaded) this.load();
    return this.table.count;
  }

  /** Writes the cache if anything was added. Never throws: a cache that cannot be saved is just slower. */
  save(): void {
    if (!this.dirty || this.file === undefined) return;
    const file = this.file;
    try {
      const mtime = fileMtimeMs(file);
      if (mtime !== this.loadedMtimeMs && mtime !== -1) {
        // Another process saved since we read: keep its entries too (ours win on conflict).
        const theirs = readCacheFile(file);
        theirs.paths.forEach((path, i) => {
          if (this.table.find(path) === -1) this.table.put(path, theirs.stats, i * FIELDS, theirs.digests, i * DIGEST_BYTES);
        });
      }
      let keep = this.table.paths.map((_, i) => i);
      if (keep.length > MAX_ENTRIES) keep = keep.filter((i) => this.table.used[i] === 1);
      const pathBytes = Buffer.from(keep.map((i) => this.table.paths[i]).join("\0"), "utf8");
      const out = Buffer.alloc(HEADER_BYTES + keep.length * (FIELDS * 8 + DIGEST_BYTES) + pathBytes.length);
      MAGIC.copy(out, 0);
      out.writeUInt32LE(keep.length, 8);
      out.writeUInt32LE(pathBytes.length, 12);
      const stats = new Float64Array(out.buffer, out.byteOffset + HEADER_BYTES, keep.length * FIELDS);
      const digestsAt = HEADER_BYTES + keep.length * FIELDS * 8;
      keep.forEach((i, n) => {
        stats.set(this.table.stats.subarray(i * FIELDS, (i + 1) * FIELDS), n * FIELDS);
        this.table.digests.copy(out, digestsAt + n * DIGEST_BYTES, i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES);
      });
      pathBytes.copy(out, digestsAt + keep.length * DIGEST_BYTES);
      mkdirSync(dirname(file), { recursive: true });
      const temp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
      try {
        writeFileSync(temp, out);
        renameSync(temp, file);
      } catch (error) {
        try {
          unlinkSync(temp);
        } catch {
          /* never created */
        }
        throw error;
      }
      this.loadedMtimeMs = fileMtimeMs(file);
      this.dirty = false;
    } catch {
      // Read-only home, full disk, …: hashing still works, only the next run is slower.
    }
  }

  private load(): void {
    this.loaded = true;
    if (this.file === undefined) return;
    this.loadedMtimeMs = fileMtimeMs(this.file);
    if (this.loadedMtimeMs === -1) return;
    const { paths, stats, digests } = readCacheFile(this.file);
    this.table = Table.adopt(paths, stats, digests);
  }
}

function fileMtimeMs(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return -1;
  }
}

function readCacheFile(file: string): { paths: string[]; stats: Float64Array; digests: Buffer } {
  const none = { paths: [], stats: new Float64Array(0), digests: Buffer.alloc(0) };
  let buffer: Buffer;
  try {
    buffer = readFileSync(file);
  } catch {
    return none;
  }
  // Another format version, or a truncated/corrupt file: ignored (and replaced on the next save).
  if (buffer.length < HEADER_BYTES || !buffer.subarray(0, 8).equals(MAGIC)) return none;
  const count = buffer.readUInt32LE(8);
  const pathLength = buffer.readUInt32LE(12);
  const digestsAt = HEADER_BYTES + count * FIELDS * 8;
  const pathsAt = digestsAt + count * DIGEST_BYTES;
  if (pathsAt + pathLength !== buffer.length) return none;
  let aligned = buffer;
  if ((buffer.byteOffset + HEADER_BYTES) % 8 !== 0) {
    aligned = Buffer.alloc(buffer.length); // unpooled: starts at offset 0 of its own ArrayBuffer
    buffer.copy(aligned);
  }
  const stats = new Float64Array(aligned.buffer, aligned.byteOffset + HEADER_BYTES, count * FIELDS);
  const paths = count === 0 ? [] : aligned.toString("utf8", pathsAt, pathsAt + pathLength).split("\0");
  if (paths.length !== count) return none;
  return { paths, stats, digests: aligned.subarray(digestsAt, pathsAt) };
}

/** Where the persisted cache lives, or undefined when persistence is off. */
export function hashCacheFile(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const setting = env.KILN_HASH_CACHE;
  if (setting !== undefined && /^(off|0|false|no)$/i.test(setting)) return undefined;
  if (setting) return setting;
  const base = env.XDG_CACHE_HOME || join(homedir(), ".cache");
  return join(base, "kiln", `hash-cache-v${FORMAT_VERSION}.bin`);
}

let shared: FileDigestCache | undefined;

/** The process-wide cache (its file is chosen from the environment on first use). */
export function sharedDigestCache(): FileDigestCache {
  const file = hashCacheFile();
  if (shared === undefined || shared.file !== file) shared = new FileDigestCache(file);
  return shared;
}
