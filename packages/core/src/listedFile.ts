/**
 * Reading a file that walk.ts listed, safely: the one way the tag hasher (hash.ts) and the build
 * context (context.ts) open a source file.
 *
 * - Opened with O_NOFOLLOW | O_NONBLOCK: a link put in the file's place since the listing is not
 *   followed (ELOOP), and a FIFO or device put there opens at once instead of blocking the process.
 * - Then `fstat` on the open descriptor must match the listing: a regular file, same device, inode and
 *   size. A directory swapped for a link above the file leads to another inode, so it is caught too.
 * Anything else is a SourceChangedError naming the file and what changed (or SourceNotFoundError when
 * the file is there but cannot be read, e.g. permissions).
 */
import { constants, type Stats } from "node:fs";
import { SourceChangedError, SourceNotFoundError } from "./errors.js";
import { hostPathForFs, quoteName } from "./rawNames.js";
import type { WalkEntry } from "./walk.js";

/** `open(2)` flags for a listed file: read-only, never through a link, never blocking. */
export const OPEN_LISTED_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/** What `open` takes for the entry's host path (a Buffer when the name is not valid UTF-8). */
export function openPath(entry: Pick<WalkEntry, "hostPath">): string | Buffer {
  return hostPathForFs(entry.hostPath);
}

/** Throws SourceChangedError unless the opened file is the regular file the listing saw. */
export function assertListed(entry: WalkEntry, st: Pick<Stats, "dev" | "ino" | "size" | "mode">, when: string): void {
  const type = st.mode & constants.S_IFMT;
  if (type !== constants.S_IFREG) throw sourceChanged(entry, `it is no longer a regular file (now ${kindOf(type)})`, when);
  if (st.dev !== entry.dev || st.ino !== entry.ino) throw sourceChanged(entry, "it was replaced by another file", when);
  if (st.size !== entry.size) throw sizeChanged(entry, st.size, when);
}

/** The error for a file whose size differs from the listing's. */
export function sizeChanged(entry: WalkEntry, size: number, when: string): SourceChangedError {
  const how = size > entry.size ? "grew" : "shrank";
  return sourceChanged(entry, `it ${how} from ${entry.size} to ${size} bytes`, when);
}

/** Why a listed file could not be opened: gone or turned into a link (changed), or unreadable. */
export function openFailure(entry: WalkEntry, error: unknown, when: string): Error {
  const code = (error as NodeJS.ErrnoException)?.code;
  if (code === "ELOOP") return sourceChanged(entry, "it was replaced by a symbolic link", when, error);
  if (code === "ENOENT" || code === "ENOTDIR") return sourceChanged(entry, "it was removed", when, error);
  return new SourceNotFoundError(`Cannot read ${describeHostPath(entry.hostPath)} ${when}: ${(error as Error)?.message ?? error}`, {
    hint: "Fix the file's permissions or exclude it with a .dockerignore pattern, then build again.",
    details: { path: entry.hostPath },
    cause: error,
  });
}

/** `what` happened to the file since it was listed; `when` says at which point it was noticed. */
export function sourceChanged(entry: WalkEntry, what: string, when: string, cause?: unknown): SourceChangedError {
  return new SourceChangedError(`${describeHostPath(entry.hostPath)} changed after the sources were listed (${when}): ${what}`, {
    hint: "Nothing was pushed. Stop whatever is writing to the source tree (or exclude the file with .dockerignore), then run the build again: it lists and hashes the sources anew.",
    details: { path: entry.hostPath, contextPath: entry.contextPath },
    ...(cause === undefined ? {} : { cause }),
  });
}

/** A host path quoted for a message, with bytes that are not UTF-8 shown as `\xNN` escapes. */
export function describeHostPath(path: string): string {
  return quoteName(path);
}

function kindOf(type: number): string {
  switch (type) {
    case constants.S_IFIFO:
      return "a FIFO";
    case constants.S_IFSOCK:
      return "a socket";
    case constants.S_IFCHR:
      return "a character device";
    case constants.S_IFBLK:
      return "a block device";
    case constants.S_IFDIR:
      return "a directory";
    case constants.S_IFLNK:
      return "a symbolic link";
    default:
      return "something else";
  }
}
