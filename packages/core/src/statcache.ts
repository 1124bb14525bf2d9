/**
 * A stat cache for file digests: (path, size, mtime, ctime, inode, device) → sha256 of the
 * contents, kept in memory and persisted to `$XDG_CACHE_HOME/kiln/hash-cache-v2.txt` (default
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
/** First line of the file. The body: `D<TAB>dir` lines, each followed by
 * `name<TAB>size<TAB>mtimeMs<TAB>ctimeMs<TAB>ino<TAB>dev<TAB>digest` lines for the files in that
 * directory — compact, and parsed with string splits (no JSON objects). Numbers round-trip exactly. */
const HEADER = `kiln-hash-cache ${FORMAT_VERSION}`;
const RACY_WINDOW_MS = 2_000;
/** Above this many entries, a save keeps only the entries this process used. */
const MAX_ENTRIES = 400_000;

const DIGEST_LENGTH = 64;
const FIELDS = 5; // size, mtimeMs, ctimeMs, ino, dev

/** Entries in flat arrays: one map lookup and five number comparisons per file on the warm path,
 * no per-entry objects or key strings for the garbage collector. */
interface Table {
  index: Map<string, number>;
  stats: number[];
  digests: string[];
}

const emptyTable = (): Table => ({ index: new Map(), stats: [], digests: [] });

function put(table: Table, path: string, stats: ArrayLike<number>, offset: number, digest: string): number {
  let i = table.index.get(path);
  if (i === undefined) {
    i = table.digests.length;
    table.index.set(path, i);
  }
  for (let f = 0; f < FIELDS; f++) table.stats[i * FIELDS + f] = stats[offset + f]!;
  table.digests[i] = digest;
  return i;
}

export class FileDigestCache {
  private table: Table = emptyTable();
  private used: boolean[] = [];
  private loaded = false;
  private dirty = false;
  private loadedMtimeMs = -1;

  /** `file`: where to persist; undefined keeps the cache in memory only. */
  constructor(readonly file: string | undefined) {}

  get(path: string, id: StatIdentity): string | undefined {
    if (!this.loaded) this.load();
    const i = this.table.index.get(path);
    if (i === undefined) return undefined;
    const s = this.table.stats;
    const o = i * FIELDS;
    if (s[o] !== id.size || s[o + 1] !== id.mtimeMs || s[o + 2] !== id.ctimeMs || s[o + 3] !== id.ino || s[o + 4] !== id.dev) return undefined;
    this.used[i] = true;
    return this.table.digests[i];
  }

  set(path: string, id: StatIdentity, digest: string): void {
    if (id.mtimeMs > Date.now() - RACY_WINDOW_MS || digest.length !== DIGEST_LENGTH || /[\t\n]/.test(path)) return;
    if (!this.loaded) this.load();
    const i = put(this.table, path, [id.size, id.mtimeMs, id.ctimeMs, id.ino, id.dev], 0, digest);
    this.used[i] = true;
    this.dirty = true;
  }

  get size(): number {
    if (!this.loaded) this.load();
    return this.table.index.size;
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
        for (const [path, i] of theirs.index) {
          if (!this.table.index.has(path)) put(this.table, path, theirs.stats, i * FIELDS, theirs.digests[i]!);
        }
      }
      let paths = [...this.table.index.keys()];
      if (paths.length > MAX_ENTRIES) paths = paths.filter((path) => this.used[this.table.index.get(path)!]);
      paths.sort();
      const lines = [HEADER];
      let currentDir: string | undefined;
      for (const path of paths) {
        const i = this.table.index.get(path)!;
        const slash = path.lastIndexOf("/");
        const dir = path.slice(0, slash);
        if (dir !== currentDir) {
          lines.push(`D\t${dir}`);
          currentDir = dir;
        }
        const o = i * FIELDS;
        const st = this.table.stats;
        lines.push(`${path.slice(slash + 1)}\t${st[o]}\t${st[o + 1]}\t${st[o + 2]}\t${st[o + 3]}\t${st[o + 4]}\t${this.table.digests[i]}`);
      }
      mkdirSync(dirname(file), { recursive: true });
      const temp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
      writeFileSync(temp, `${lines.join("\n")}\n`);
      try {
        renameSync(temp, file);
      } catch (error) {
        unlinkSync(temp);
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
    this.table = readCacheFile(this.file);
  }
}

function fileMtimeMs(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return -1;
  }
}

function readCacheFile(file: string): Table {
  const table = emptyTable();
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return table;
  }
  const lines = text.split("\n");
  // A cache from another format version, or a corrupt one, is ignored (and replaced on the next save).
  if (lines[0] !== HEADER) return table;
  let dir: string | undefined;
  const numbers = [0, 0, 0, 0, 0];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.startsWith("D\t")) {
      dir = line.slice(2);
      continue;
    }
    const parts = line.split("\t");
    if (parts.length !== 7 || dir === undefined || parts[6]!.length !== DIGEST_LENGTH) continue;
    for (let f = 0; f < FIELDS; f++) numbers[f] = Number(parts[f + 1]);
    put(table, `${dir}/${parts[0]}`, numbers, 0, parts[6]!);
  }
  return table;
}

/** Where the persisted cache lives, or undefined when persistence is off. */
export function hashCacheFile(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const setting = env.KILN_HASH_CACHE;
  if (setting !== undefined && /^(off|0|false|no)$/i.test(setting)) return undefined;
  if (setting) return setting;
  const base = env.XDG_CACHE_HOME || join(homedir(), ".cache");
  return join(base, "kiln", `hash-cache-v${FORMAT_VERSION}.txt`);
}

let shared: FileDigestCache | undefined;

/** The process-wide cache (its file is chosen from the environment on first use). */
export function sharedDigestCache(): FileDigestCache {
  const file = hashCacheFile();
  if (shared === undefined || shared.file !== file) shared = new FileDigestCache(file);
  return shared;
}
