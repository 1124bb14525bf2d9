/**
 * Writes into one OCI image layout directory (image-spec's image-layout.md): `oci-layout`,
 * `blobs/sha256/<hex>` and `index.json`. Blobs are written to a temporary file next to their final
 * place, checked against their digest and renamed in, so a blob file is never partial; a blob
 * already there (same size) is kept. `index.json` is rewritten whole (temporary file + rename) under
 * a lock file, so two builds tagging into the same layout never lose each other's entry.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { copyFile, mkdir, open, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Transform, type Readable, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { BuildFailedError } from "@kiln/core";
import { canonicalJson } from "./canonicalJson.js";
import { OCI_TYPES } from "./mediaTypes.js";

export const REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name";
const LOCK_WAIT_MS = 60_000;
const STALE_LOCK_MS = 10 * 60_000;

export interface LayoutDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: Record<string, string>;
}

export interface LayoutIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: LayoutDescriptor[];
}

export function blobPath(dir: string, digest: string): string {
  const [algorithm, hex] = digest.split(":");
  return join(dir, "blobs", algorithm!, hex!);
}

export async function readLayoutIndex(dir: string): Promise<LayoutIndex | undefined> {
  let text: string;
  try {
    text = await readFile(join(dir, "index.json"), "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  return JSON.parse(text) as LayoutIndex;
}

export class OciLayoutWriter {
  constructor(readonly dir: string) {}

  async init(): Promise<void> {
    await mkdir(join(this.dir, "blobs", "sha256"), { recursive: true });
    const marker = join(this.dir, "oci-layout");
    await writeFile(marker, JSON.stringify({ imageLayoutVersion: "1.0.0" }), { flag: "wx" }).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== "EEXIST") throw error;
    });
  }

  async hasBlob(digest: string, size: number): Promise<boolean> {
    try {
      return (await stat(blobPath(this.dir, digest))).size === size;
    } catch {
      return false;
    }
  }

  /** Streams a blob in; its bytes must hash to `digest`. Returns false when it was already there. */
  async putStream(digest: string, size: number, open: () => Readable | Promise<Readable>): Promise<boolean> {
    if (await this.hasBlob(digest, size)) return false;
    const temp = this.tempPath();
    const hash = createHash(digest.split(":")[0]!);
    let written = 0;
    const count = new Transform({
      transform(chunk: Buffer, _e: BufferEncoding, callback: TransformCallback) {
        hash.update(chunk);
        written += chunk.length;
        callback(null, chunk);
      },
    });
    try {
      await pipeline(await open(), count, createWriteStream(temp));
      const got = `${digest.split(":")[0]}:${hash.digest("hex")}`;
      if (got !== digest || written !== size) {
        throw new BuildFailedError(
          `A blob written into the OCI layout ${this.dir} is not what was expected: ${digest} (${size} bytes), got ${got} (${written} bytes)`,
          {
            hint: "Build again; if it repeats, the base image in its registry may be damaged.",
            details: { layout: this.dir, digest, got },
          },
        );
      }
      await rename(temp, blobPath(this.dir, digest));
      return true;
    } finally {
      await rm(temp, { force: true });
    }
  }

  /** A file whose digest is already known (a layer just written): moved in when possible, else copied. */
  async putFile(digest: string, size: number, path: string): Promise<boolean> {
    if (await this.hasBlob(digest, size)) return false;
    const temp = this.tempPath();
    try {
      await copyFile(path, temp);
      await rename(temp, blobPath(this.dir, digest));
    } finally {
      await rm(temp, { force: true });
    }
    return true;
  }

  async putBytes(body: Buffer): Promise<string> {
    const digest = `sha256:${createHash("sha256").update(body).digest("hex")}`;
    if (await this.hasBlob(digest, body.length)) return digest;
    const temp = this.tempPath();
    try {
      await writeFile(temp, body);
      await rename(temp, blobPath(this.dir, digest));
    } finally {
      await rm(temp, { force: true });
    }
    return digest;
  }

  /** Points `tag` at `descriptor` in index.json (replacing an entry of the same tag), atomically. */
  async tag(tag: string, descriptor: LayoutDescriptor): Promise<void> {
    const release = await this.lock();
    try {
      const index = (await readLayoutIndex(this.dir)) ?? { schemaVersion: 2, manifests: [] };
      const manifests = (index.manifests ?? []).filter((m) => m.annotations?.[REF_NAME_ANNOTATION] !== tag);
      manifests.push({ ...descriptor, annotations: { ...descriptor.annotations, [REF_NAME_ANNOTATION]: tag } });
      const temp = join(this.dir, `.index.json.${randomBytes(6).toString("hex")}`);
      try {
        await writeFile(temp, canonicalJson({ ...index, schemaVersion: 2, mediaType: OCI_TYPES.index, manifests }));
        await rename(temp, join(this.dir, "index.json"));
      } finally {
        await rm(temp, { force: true });
      }
    } finally {
      await release();
    }
  }

  private tempPath(): string {
    return join(this.dir, "blobs", "sha256", `.kiln-tmp-${randomBytes(8).toString("hex")}`);
  }

  /** An exclusive lock file beside index.json; a lock older than 10 minutes is a crashed writer's. */
  private async lock(): Promise<() => Promise<void>> {
    const path = join(this.dir, ".index.json.lock");
    const deadline = Date.now() + LOCK_WAIT_MS;
    for (;;) {
      try {
        const handle = await open(path, "wx");
        await handle.close();
        return () => rm(path, { force: true });
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      }
      const age = await stat(path).then(
        (s) => Date.now() - s.mtimeMs,
        () => 0,
      );
      if (age > STALE_LOCK_MS) await rm(path, { force: true });
      else if (Date.now() > deadline) {
        throw new BuildFailedError(`The OCI layout ${this.dir} stays locked by another build (${path})`, {
          hint: `If no other build is writing there, remove ${path}.`,
          details: { layout: this.dir, lock: path },
        });
      } else await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** For tests and tools: a blob's bytes as a stream. */
export function openLayoutBlob(dir: string, digest: string): Readable {
  return createReadStream(blobPath(dir, digest));
}
