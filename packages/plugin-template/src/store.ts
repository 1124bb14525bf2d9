/**
 * The "catalogue": where MyImageBuilder puts what it builds and where MyImageChecker looks.
 *
 * It stands in for the remote system a real plugin talks to (a build service, an artifact registry):
 * a directory with one JSON record per image plus the Dockerfile and build context each build
 * produced. One file per image (written atomically: temp file + rename) means two processes never
 * race on a shared index. Replace this file with your service's client when you fork the template.
 *
 * Location: `$KILN_MY_BUILDER_STORE`, else `.kiln-cache/my-builder` under the current directory.
 * Kiln creates plugin classes with no arguments, so settings come from the environment.
 */
import { createHash } from "node:crypto";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Architecture } from "@kiln/core";

export const STORE_ENV = "KILN_MY_BUILDER_STORE";

export interface CatalogueRecord {
  /** `<registry>/<name>` (or `<name>`), the image URI without its tag. */
  repository: string;
  tag: string;
  uri: string;
  platforms: Architecture[];
  /** sha256 over the Dockerfile and the build context this build produced. */
  digest: string;
  builtAt: string;
  /** Where the Dockerfile and context.tar of this build were written. */
  artifactDir: string;
}

export function storeDir(): string {
  return resolve(process.env[STORE_ENV] || join(".kiln-cache", "my-builder"));
}

function recordKey(repository: string, tag: string): string {
  return createHash("sha256").update(`${repository}:${tag}`).digest("hex").slice(0, 32);
}

function recordPath(repository: string, tag: string): string {
  return join(storeDir(), "images", `${recordKey(repository, tag)}.json`);
}

/**
 * The record of repository:tag, or null when the catalogue has never seen it. `signal` cancels the
 * read (it then rejects with an AbortError, never resolves null).
 */
export async function readRecord(repository: string, tag: string, options: { signal?: AbortSignal } = {}): Promise<CatalogueRecord | null> {
  let text: string;
  try {
    text = await readFile(recordPath(repository, tag), { encoding: "utf8", ...(options.signal ? { signal: options.signal } : {}) });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
  const record = JSON.parse(text) as CatalogueRecord;
  // A hash collision of the file name is astronomically unlikely, but a record must match exactly.
  return record.repository === repository && record.tag === tag ? record : null;
}

export async function writeRecord(record: CatalogueRecord): Promise<void> {
  const file = recordPath(record.repository, record.tag);
  await mkdir(join(storeDir(), "images"), { recursive: true });
  const temp = `${file}.${process.pid}.${Date.now()}.tmp`;
  try {
    await writeFile(temp, `${JSON.stringify(record, null, 2)}\n`);
    await rename(temp, file);
  } catch (error) {
    // A failed write or rename must not leave its temp file behind.
    await rm(temp, { force: true }).catch(() => undefined);
    throw error;
  }
}

/** A fresh directory for one build's artifacts. */
export async function newArtifactDir(buildId: string): Promise<string> {
  const dir = join(storeDir(), "builds", buildId);
  await mkdir(dir, { recursive: true });
  return dir;
}
