/**
 * Writes one layer: the tar stream of its entries, gzip'd with fixed settings, to a file in the
 * build's scratch directory, with both digests computed as the bytes pass — the diffID (sha256 of
 * the tar) for the config and the digest (sha256 of the gzip) for the manifest. Nothing is held in
 * memory beyond a read buffer, whatever the layer's size.
 *
 * gzip: level 6, default window and memLevel, no name, mtime 0 in the header (Node's zlib writes
 * it so); the compressed bytes depend on the zlib version, so a digest is reproducible per Node/zlib,
 * never across them — the content tag never depends on it.
 */
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { join } from "node:path";
import { Readable, Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { constants, createGzip } from "node:zlib";
import { END_OF_ARCHIVE } from "./tarHeader.js";

export const GZIP_OPTIONS = { level: 6, windowBits: 15, memLevel: 8, strategy: constants.Z_DEFAULT_STRATEGY } as const;

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
  const count = new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      gzHash.update(chunk);
      size += chunk.length;
      callback(null, chunk);
    },
  });
  await pipeline(Readable.from(tar(), { objectMode: false }), createGzip(GZIP_OPTIONS), count, createWriteStream(path));
  return { path, digest: `sha256:${gzHash.digest("hex")}`, size, diffId: `sha256:${tarHash.digest("hex")}` };
}
