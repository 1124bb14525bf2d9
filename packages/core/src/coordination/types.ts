/**
 * The coordination plugin kinds: who may build an image right now (a LockProvider handing out
 * leases), and what is already known to exist (a CheckCache). Both are selected like builders —
 * `build()` options › `init()` › `KILN_LOCK_PROVIDER` / `KILN_CHECK_CACHE` › config file — and
 * registered by plugins through package.json's `kiln.lockProviders` / `kiln.checkCaches`.
 *
 * Defaults keep the single-host behaviour: the per-host lock file (lock.ts) and no shared cache.
 */
import type { Architecture } from "../layers.js";

/** What the engine asks a lock provider for: the lease on one image (uri + platforms). */
export interface LeaseRequest {
  /** `<uri>|<sorted platforms>` — the same key every host derives for the same image. */
  key: string;
  /** The image URI, for messages. */
  image: string;
  signal?: AbortSignal;
  /**
   * Called while waiting for another holder: when it is first found held, whenever the holder
   * changes (a takeover) and at least every few seconds, so waiting shows progress.
   */
  onWait?: (wait: LockWait) => void;
}

export interface LockWait {
  /** Who holds it, e.g. `ci-runner-7/4121` (host/pid), when the provider knows. */
  holder?: string;
  /** How long this caller has waited so far. */
  waitedMs: number;
  /** How long the holder's lease still runs unless renewed, when the provider knows. */
  remainingLeaseMs?: number;
  /** Where the lock lives (a file path, a Redis key), for messages. */
  location?: string;
}

/**
 * A held lease. While a lease is held nobody else holds one for the same key; a lease with
 * `leaseMs` ends on its own unless renewed in time (the engine renews it every third of that), so
 * a holder that crashed or was cut off is replaced after at most `leaseMs`.
 */
export interface Lease {
  /**
   * Increases with every lease handed out for a key (a shared provider: across hosts), so whatever
   * receives writes tagged with it can refuse one from an older holder. Carried by the build
   * (`BuildImageOptions.fencingToken`).
   */
  readonly fencingToken: number;
  /** True when another holder had to be waited for. */
  readonly waited: boolean;
  /** Who holds it (host/pid), for events. */
  readonly holder: string;
  /** Where it lives (a file path, a Redis key), for messages. */
  readonly location?: string;
  /** How long it lasts without renewal; undefined: as long as this process lives (a local lock). */
  readonly leaseMs?: number;
  /**
   * Extends the lease to a full `leaseMs` from now. True: still ours. False: definitely lost
   * (expired and possibly taken by another holder) — the holder must not push. Throws when the
   * provider cannot be reached (the lease may or may not still be ours).
   */
  renew(): Promise<boolean>;
  /** Gives it up (only while it is still ours: never deletes another holder's lease). */
  release(): Promise<void>;
}

export interface LockProvider {
  /** The name it is listed under (defaults to the selected name). */
  readonly name?: string;
  /**
   * Takes the lease for `request.key`, waiting while another live holder has it. Rejects with a
   * CancelledError when the signal aborts, and with a CoordinationUnavailableError (or any error)
   * when the provider cannot be reached — then the engine falls back to the per-host lock with a
   * warning, or fails in strict mode. Must never wait forever on an unreachable service.
   */
  acquire(request: LeaseRequest): Promise<Lease>;
  /** Closes connections (optional; a provider should not keep an idle process alive anyway). */
  close?(): Promise<void>;
}

/** What a check answers about: one repository and tag, for exactly these platforms. */
export interface CheckCacheKey {
  /** `<registry>/<name>` */
  repository: string;
  tag: string;
  platforms: readonly Architecture[];
}

export type CachedCheck =
  /** Present for every platform of the key, at this manifest (or index) digest. */
  | {
      state: "present";
      uri: string;
      digest: string;
      /** How long ago it was checked (or re-verified). */
      ageMs: number;
      /** Older than the cache's TTL: the engine re-verifies the digest with one HEAD before trusting it. */
      stale: boolean;
    }
  /** Absent when checked `ageMs` ago; a cache keeps this only briefly (seconds). */
  | { state: "absent"; ageMs: number };

export interface CheckCacheLookupOptions {
  signal?: AbortSignal;
  /**
   * On a miss, may this caller wait for (or be elected to do) the one check of this key that all
   * hosts share? True before the lock; false after it (the lock holder checks itself).
   */
  singleFlight?: boolean;
}

export interface CheckCacheLookup {
  /** The entry — possibly put by another host while this caller waited — or null on a miss. */
  entry: CachedCheck | null;
  /**
   * True when this caller was elected to check for everyone: it must then call putPresent,
   * putAbsent or releaseClaim (waiters stop waiting on any of them).
   */
  claimed: boolean;
}

export interface CheckCache {
  readonly name?: string;
  lookup(key: CheckCacheKey, options?: CheckCacheLookupOptions): Promise<CheckCacheLookup>;
  /** Remembers "present at `digest`" (also refreshes the entry's age after a re-verify). */
  putPresent(key: CheckCacheKey, value: { uri: string; digest: string }): Promise<void>;
  /** Remembers "absent" for a short, configurable time only. */
  putAbsent(key: CheckCacheKey): Promise<void>;
  /** Forgets the entry (its digest is gone from the registry). */
  invalidate(key: CheckCacheKey): Promise<void>;
  /** Gives a claim up without an answer (the check failed), so waiters check themselves. */
  releaseClaim(key: CheckCacheKey): Promise<void>;
  close?(): Promise<void>;
}
