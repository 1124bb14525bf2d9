/**
 * The base image's filesystem view (debianRootView.ts) kept between builds: reading it streams every
 * base layer through gunzip and a tar parser (seconds for a 200 MB Debian base), and it depends on
 * nothing but those layers. The key is the sha256 of the layer digests in order (content addresses:
 * the same chain always gives the same view); the value is every path's type, mode and link target
 * and the kept files' bytes, one JSON file per key in `<layer cache>/debian-bases/`. Best effort both
 * ways: an unreadable or malformed entry is read again from the registry, a cache that cannot be
 * written costs the next build the read.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { DebianRootView, type RootEntryType } from "./debianRootView.js";

const VERSION = 1;

type StoredEntry = [path: string, type: RootEntryType, mode: number, linkname?: string];

interface Stored {
  v: number;
  entries: StoredEntry[];
  contents: Array<[path: string, base64: string]>;
}

export function debianBaseKey(layerDigests: readonly string[]): string {
  return createHash("sha256")
    .update(`kiln-oci-debian-base-v${VERSION}\n${layerDigests.join("\n")}`)
    .digest("hex");
}

export class DebianBaseCache {
  constructor(private readonly dir: string) {}

  async get(key: string): Promise<DebianRootView | undefined> {
    try {
      const stored = JSON.parse(await readFile(join(this.dir, `${key}.json`), "utf8")) as Stored;
      if (stored.v !== VERSION || !Array.isArray(stored.entries) || !Array.isArray(stored.contents)) return undefined;
      const view = new DebianRootView();
      for (const [path, type, mode, linkname] of stored.entries) view.entries.set(path, { type, mode, ...(linkname !== undefined ? { linkname } : {}) });
      for (const [path, data] of stored.contents) view.contents.set(path, Buffer.from(data, "base64"));
      return view;
    } catch {
      return undefined;
    }
  }

  async set(key: string, view: DebianRootView): Promise<void> {
    const stored: Stored = {
      v: VERSION,
      entries: [...view.entries].map(([path, e]) => (e.linkname !== undefined ? [path, e.type, e.mode, e.linkname] : [path, e.type, e.mode])),
      contents: [...view.contents].map(([path, data]) => [path, data.toString("base64")]),
    };
    try {
      await mkdir(this.dir, { recursive: true });
      const temp = join(this.dir, `.${key}.${randomBytes(4).toString("hex")}`);
      await writeFile(temp, JSON.stringify(stored));
      await rename(temp, join(this.dir, `${key}.json`));
    } catch {
      // read-only home, full disk: build on without the cache
    }
  }
}
