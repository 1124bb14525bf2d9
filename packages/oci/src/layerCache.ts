/**
 * The layer-digest cache: a rebuild does not tar and gzip a file layer again when nothing that goes
 * into its bytes changed. The key is the sha256 of everything the bytes depend on — each entry's tar
 * header (name, type, mode, owner, size, link target, mtime = build epoch) and the pinned sha256 of
 * each file's content (computed for the content tag anyway, so nothing is read again), the gzip
 * settings and the zlib version; the value is the layer's digest, size and diffID. Kept in
 * `$XDG_CACHE_HOME/kiln/oci-layers/` (default ~/.cache), one small JSON file per key.
 *
 * Only the digests are cached, not the bytes: a target that already holds the blob (the usual
 * rebuild) needs nothing else; one that lacks it gets the layer written again on demand, and those
 * bytes must have the cached digest (else a BuildFailedError — never a wrong blob). Python layers
 * (pip's output, not pinned sources) are never cached.
 */
import { createHash } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { pinnedDigest, type SourceSnapshot } from "@kiln/core/plugin";
import { canonicalJson } from "./canonicalJson.js";
import { GZIP_OPTIONS } from "./layerFile.js";
import type { PlannedLayer } from "./sourceLayers.js";

export interface CachedLayer {
  digest: string;
  size: number;
  diffId: string;
}

const VERSION = 1;

export function layerCacheDir(env: NodeJS.ProcessEnv): string {
  return join(env.XDG_CACHE_HOME || join(homedir(), ".cache"), "kiln", "oci-layers");
}

/** The key of a planned file layer; undefined when it cannot be cached (Python layers, made bytes). */
export function layerCacheKey(layer: PlannedLayer, snapshot: SourceSnapshot): string | undefined {
  if (layer.python) return undefined;
  const entries: unknown[] = [];
  for (const entry of layer.entries) {
    if (entry.data || entry.hostPath) return undefined;
    entries.push({ h: entry.header, d: entry.source ? pinnedDigest(snapshot, entry.source).toString("hex") : null });
  }
  const text = canonicalJson({ v: VERSION, zlib: process.versions.zlib, gzip: GZIP_OPTIONS, entries });
  return createHash("sha256").update(text).digest("hex");
}

export class LayerCache {
  constructor(private readonly dir: string) {}

  async get(key: string): Promise<CachedLayer | undefined> {
    try {
      const value = JSON.parse(await readFile(join(this.dir, `${key}.json`), "utf8")) as CachedLayer;
      return /^sha256:[0-9a-f]{64}$/.test(value.digest) && /^sha256:[0-9a-f]{64}$/.test(value.diffId) && Number.isSafeInteger(value.size) ? value : undefined;
    } catch {
      return undefined;
    }
  }

  /** Best effort: a cache that cannot be written only costs the next build the work. */
  async set(key: string, value: CachedLayer): Promise<void> {
    try {
      await mkdir(this.dir, { recursive: true });
      const temp = join(this.dir, `.${key}.${randomBytes(4).toString("hex")}`);
      await writeFile(temp, JSON.stringify({ digest: value.digest, size: value.size, diffId: value.diffId }));
      await rename(temp, join(this.dir, `${key}.json`));
    } catch {
      // read-only home, full disk: build on without the cache
    }
  }
}
