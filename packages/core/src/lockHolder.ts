/**
 * Who holds a build lock, and whether that process still exists. A pid alone does not say: after a
 * `kill -9` the pid may be reused (a restarted container's Kiln is pid 1 again), the machine may
 * have rebooted, or the lock may come from another host sharing the directory. So a lock records
 * its holder's pid, hostname, boot id (/proc/sys/kernel/random/boot_id), pid namespace
 * (/proc/self/ns/pid) and process start time (field 22 of /proc/<pid>/stat, clock ticks since boot).
 *
 * Verdict (`holderState`):
 *  - another hostname: "unknown" (the lease decides);
 *  - same hostname, another boot id: "dead" (the machine rebooted since);
 *  - same hostname, another pid namespace: "unknown" (its pids mean nothing here);
 *  - pid not running: "dead";
 *  - pid running with another start time: "dead" (the pid was reused); the same start time: "alive";
 *  - a start time that cannot be read (not Linux, /proc hidden, a lock without one): "unknown".
 */
import { readFileSync, readlinkSync } from "node:fs";
import { hostname } from "node:os";

export interface HolderIdentity {
  pid: number;
  host: string;
  /** Linux: the kernel's boot id (shared by every container on that kernel). */
  bootId?: string;
  /** Linux: the holder's pid namespace, e.g. "pid:[4026531836]". */
  pidNamespace?: string;
  /** Linux: the holder's start time, in clock ticks since boot (decimal text). */
  startTime?: string;
}

export type HolderState = "alive" | "dead" | "unknown";

function readTrimmed(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Field 22 of /proc/<pid>/stat; fields are counted after the command name, which may hold spaces and ")". */
export function processStartTime(pid: number): string | undefined {
  const stat = readTrimmed(`/proc/${pid}/stat`);
  if (!stat) return undefined;
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const value = fields[22 - 3];
  return value && /^\d+$/.test(value) ? value : undefined;
}

let self: HolderIdentity | undefined;

/** This process, as a lock records it (read once: none of it changes while the process runs). */
export function currentHolder(): HolderIdentity {
  if (self && self.pid === process.pid) return self;
  const identity: HolderIdentity = { pid: process.pid, host: hostname() };
  const bootId = readTrimmed("/proc/sys/kernel/random/boot_id");
  if (bootId) identity.bootId = bootId;
  try {
    identity.pidNamespace = readlinkSync("/proc/self/ns/pid");
  } catch {
    // not Linux, or /proc not mounted
  }
  const startTime = processStartTime(process.pid);
  if (startTime) identity.startTime = startTime;
  return (self = identity);
}

function pidRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"; // exists, owned by someone else
  }
}

/** Both known and different. */
const differs = (a: string | undefined, b: string | undefined) => a !== undefined && b !== undefined && a !== b;

/** Whether the lock's holder still runs, as far as this process can tell (see the file comment). */
export function holderState(holder: HolderIdentity, me: HolderIdentity = currentHolder()): HolderState {
  if (holder.host !== me.host) return "unknown";
  if (differs(holder.bootId, me.bootId)) return "dead";
  if (differs(holder.pidNamespace, me.pidNamespace)) return "unknown";
  if (!pidRunning(holder.pid)) return "dead";
  const running = processStartTime(holder.pid);
  if (holder.startTime === undefined || running === undefined) return "unknown";
  return running === holder.startTime ? "alive" : "dead";
}

/**
 * Same boot id: the holder runs on this very kernel (another container on this host, say), so its
 * wall clock is ours and a renewal time it wrote can be compared with `Date.now()` directly.
 */
export function sharesKernel(holder: HolderIdentity, me: HolderIdentity = currentHolder()): boolean {
  return holder.bootId !== undefined && holder.bootId === me.bootId;
}
