/**
 * apt's package lists kept between builds, so `apt-get update` asks the mirror only whether they
 * changed (If-Modified-Since on InRelease; the lists are checked against its hashes either way)
 * instead of downloading every Packages file again. Keyed by what the lists depend on — the sources
 * as the base has them, the keyrings' bytes, the architectures and this machine's Acquire settings —
 * so images with other sources never share lists. Each build copies the lists into its private apt
 * directory and, after a successful update, copies them back under a new name renamed into place:
 * concurrent builds never share a directory or an apt lock. Best effort both ways.
 */
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, readdir, rename, rm, stat, utimes } from "node:fs/promises";
import { join } from "node:path";

/** The plain files of a lists directory (not `lock`, `partial/`, `auxfiles/`). */
async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  return entries.filter((e) => e.isFile() && e.name !== "lock").map((e) => e.name);
}

export async function restoreAptLists(cacheDir: string, key: string, listsDir: string): Promise<void> {
  try {
    const from = join(cacheDir, key);
    for (const name of await listFiles(from)) await copyKeepingTime(join(from, name), join(listsDir, name));
  } catch {
    // nothing cached yet (or unreadable): apt-get update downloads them
  }
}

export async function saveAptLists(cacheDir: string, key: string, listsDir: string): Promise<void> {
  const suffix = randomBytes(4).toString("hex");
  const fresh = join(cacheDir, `.${key}.${suffix}`);
  const old = join(cacheDir, `.${key}.old.${suffix}`);
  try {
    await mkdir(fresh, { recursive: true });
    for (const name of await listFiles(listsDir)) await copyKeepingTime(join(listsDir, name), join(fresh, name));
    await rename(join(cacheDir, key), old).catch(() => undefined);
    await rename(fresh, join(cacheDir, key));
  } catch {
    // read-only home, full disk, a concurrent build renamed first: the next build updates anew
  } finally {
    await rm(fresh, { recursive: true, force: true }).catch(() => undefined);
    await rm(old, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** apt asks the mirror If-Modified-Since the file's mtime: a copy must keep it, or stale lists would look new. */
async function copyKeepingTime(from: string, to: string): Promise<void> {
  const info = await stat(from);
  await copyFile(from, to);
  await utimes(to, info.atime, info.mtime);
}
