/**
 * Directories and files only this user controls. Kiln keeps state that other processes act on
 * (build locks, the Docker plugin's orphan-container ledger) in per-user directories, by default
 * under the shared temp dir, where another local user can create the directory first: `mkdir` with
 * `recursive` neither fails nor tightens an existing one. So a directory is used only when it is a
 * real directory (lstat: a symlink is never followed) owned by this user, without group/other
 * permission bits beyond what the caller allows; files in it are opened with O_NOFOLLOW and checked
 * on the opened descriptor, so they cannot be swapped between the check and the read.
 * Windows has no owner/mode bits here: only the "real directory / regular file" parts apply there.
 */
import { closeSync, constants, fstatSync, lstatSync, mkdirSync, openSync, readSync, type Stats } from "node:fs";

export interface PrivacyRules {
  /**
   * Permission bits group and others must not have: 0o022 (default: writable by nobody else) or
   * 0o077 (private: no access at all for anyone else, as a 0700 directory).
   */
  forbiddenModeBits?: number;
}

const ownUid = (): number | undefined => process.getuid?.();

const modeText = (mode: number) => (mode & 0o777).toString(8).padStart(4, "0");

/**
 * Why `stats` (of `path`) is not this user's alone: owned by someone else, or with forbidden
 * group/other bits. `undefined` when it is fine.
 */
export function ownershipProblem(path: string, stats: Stats, rules: PrivacyRules = {}): string | undefined {
  const uid = ownUid();
  if (uid === undefined) return undefined;
  if (stats.uid !== uid) return `${path} is owned by uid ${stats.uid}, not by this user (uid ${uid})`;
  const forbidden = rules.forbiddenModeBits ?? 0o022;
  if ((stats.mode & forbidden & 0o022) !== 0) return `${path} is writable by group or others (mode ${modeText(stats.mode)})`;
  if ((stats.mode & forbidden) !== 0) return `${path} is accessible by group or others (mode ${modeText(stats.mode)}; expected 0700)`;
  return undefined;
}

/**
 * Why `path` is not a directory only this user controls (`ownershipProblem` rules), `undefined`
 * when it is one, `null` when it does not exist.
 */
export function directoryProblem(path: string, rules: PrivacyRules = {}): string | null | undefined {
  let stats: Stats;
  try {
    stats = lstatSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === "ENOENT" ? null : `${path} cannot be checked (${code ?? "error"})`;
  }
  if (stats.isSymbolicLink()) return `${path} is a symbolic link, not a directory`;
  if (!stats.isDirectory()) return `${path} is not a directory`;
  return ownershipProblem(path, stats, rules);
}

/**
 * Creates `path` (mode 0700, parents too) unless it exists, then checks it: the reason it must not
 * be used, or `undefined`. A directory someone else made first is reported, never "fixed" (chmod
 * would not remove files already planted in it). File-system errors of mkdir (ENOSPC, EROFS, …) throw.
 */
export function preparePrivateDirectory(path: string, rules: PrivacyRules = {}): string | undefined {
  let problem = directoryProblem(path, rules);
  if (problem === null) {
    try {
      mkdirSync(path, { recursive: true, mode: 0o700 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    problem = directoryProblem(path, rules); // whatever is there now, made by us or not
  }
  return problem ?? (problem === null ? `${path} does not exist` : undefined);
}

/** Where a file is opened: a symlink fails (never followed), a FIFO cannot block the open. */
export const NO_FOLLOW_READ = constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0);

/**
 * The text of `path` when it is a regular file of this user's that nobody else can write (checked
 * on the opened descriptor), else `undefined`: a symlink, FIFO, someone else's file, a file larger
 * than `maxBytes`, or one that vanished is never followed, trusted or waited on.
 */
export function readOwnRegularFile(path: string, options: PrivacyRules & { maxBytes?: number } = {}): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, NO_FOLLOW_READ);
  } catch {
    return undefined;
  }
  try {
    const stats = fstatSync(fd);
    const maxBytes = options.maxBytes ?? 1024 * 1024;
    if (!stats.isFile() || stats.size > maxBytes || ownershipProblem(path, stats, options)) return undefined;
    const buffer = Buffer.alloc(stats.size);
    let read = 0;
    while (read < buffer.length) {
      const n = readSync(fd, buffer, read, buffer.length - read, read);
      if (n === 0) break;
      read += n;
    }
    return buffer.subarray(0, read).toString("utf8");
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}
