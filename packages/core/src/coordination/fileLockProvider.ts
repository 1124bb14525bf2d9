/**
 * The default lock provider: today's per-host lock file (lock.ts), as a LockProvider. It
 * coordinates the processes of one machine (and of machines sharing the lock directory); the file
 * lock keeps its own lease alive while this process lives, so `renew()` has nothing to ask.
 */
import { hostname } from "node:os";
import { acquireImageLock, type AcquireLockOptions, type LockHandle } from "../lock.js";
import type { Lease, LeaseRequest, LockProvider } from "./types.js";

/** How the file lock is taken: acquireImageLock, or the engine's wrapper around it (typed disk errors, events). */
export type TakeFileLock = (key: string, options: Pick<AcquireLockOptions, "signal" | "onWait">) => Promise<LockHandle>;

let lastFence = 0;
/**
 * A per-host fencing token: increasing within this process and, being time-based, across the
 * processes of one host (the file lock never spans hosts that do not share its directory).
 */
function nextFileFence(): number {
  lastFence = Math.max(lastFence + 1, Date.now() * 1000);
  return lastFence;
}

export class FileLockProvider implements LockProvider {
  readonly name = "file";

  constructor(private readonly take: TakeFileLock = (key, options) => acquireImageLock(key, options)) {}

  async acquire(request: LeaseRequest): Promise<Lease> {
    const started = Date.now();
    const handle = await this.take(request.key, {
      ...(request.signal ? { signal: request.signal } : {}),
      onWait: (lockPath) => request.onWait?.({ location: lockPath, waitedMs: Date.now() - started }),
    });
    return {
      fencingToken: nextFileFence(),
      waited: handle.waited,
      holder: `${hostname()}/${process.pid}`,
      location: handle.path,
      renew: async () => true,
      release: async () => handle.release(),
    };
  }
}
