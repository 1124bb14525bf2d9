/**
 * Writes one layer: the tar stream of its entries, gzip'd with fixed settings, to a file in the
 * build's scratch directory, with both digests computed as the bytes pass — the diffID (sha256 of
 * the tar) for the config and the digest (sha256 of the gzip) for the manifest. Nothing is held in
 * memory beyond a read buffer, whatever the layer's size.
 *
 * gzip: level 6, default window and memLevel, no name, mtime 0 in the header, compressed in 1 MiB
 * blocks on all cores (parallelGzip.ts: one gzip member, the same bytes whatever the timing or the
 * thread count); the compressed bytes depend on the zlib version, so a digest is reproducible per
 * Node/zlib, never across them — the content tag never depends on it.
 */
import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { constants } from "node:zlib";
import { parallelGzip } from "./parallelGzip.js";
import { END_OF_ARCHIVE } from "./tarHeader.js";

/** Everything the gzip bytes depend on besides the zlib version (also part of the layer cache's key). */
export const GZIP_OPTIONS = {
  level: 6,
  windowBits: 15,
  memLevel: 8,
  strategy: constants.Z_DEFAULT_STRATEGY,
  format: "blocks-one-member",
  blockBytes: 1024 * 1024,
  // Random-looking blocks (compressed files, random data: ≈ 7.9998 for 1 MiB) are stored, not deflated.
  storeAboveEntropy: 7.99,
} as const;

export interface WrittenLayer {
  /** The gzip file. */
  path: string;
  /** sha256 of the gzip bytes. */
  digest: string;
  size: number;
  /** sha256 of the uncompressed tar. */
  diffId: string;
}

/** `chunks` yields the tar bytes of the entries (headers, bodies, padding) in order; the end blocks are added here. */
export async function writeLayer(dir: string, name: string, chunks: AsyncIterable<Buffer>): Promise<WrittenLayer> {
  const path = join(dir, `${name}.tar.gz`);
  const tarHash = createHash("sha256");
  const gzHash = createHash("sha256");
  let size = 0;
  async function* tar(): AsyncGenerator<Buffer> {
    for await (const chunk of chunks) {
      tarHash.update(chunk);
      yield chunk;
    }
    tarHash.update(END_OF_ARCHIVE);
    yield END_OF_ARCHIVE;
  }
  const file = await open(path, "w");
  try {
    for await (const gz of parallelGzip(tar(), GZIP_OPTIONS)) {
      gzHash.update(gz);
      size += gz.length;
      await file.write(gz);
    }
  } finally {
    await file.close();
  }
  return { path, digest: `sha256:${gzHash.digest("hex")}`, size, diffId: `sha256:${tarHash.digest("hex")}` };
}
