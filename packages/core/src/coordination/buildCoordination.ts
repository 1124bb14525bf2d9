/**
 * The engine's side of coordination, for one build of one image, in the order that keeps the
 * tag's promise ("this tag is this content, built once"):
 *
 *  1. `check`: the shared cache first. A fresh "present at D" is found (nothing asked of the
 *     registry); an older one is re-verified with one HEAD of `<repository>@D` — a digest the
 *     registry does not have (a poisoned or outdated entry) is dropped and ignored. A short-lived
 *     "absent" skips the check before the lock (never after it). On a miss the builder's checkers
 *     run — once for all hosts when the cache elects one caller to check for everyone — and their
 *     answer is remembered. Only registry images are cached (a daemon's local images are its own).
 *  2. `acquire`: the build lease from the selected lock provider, waiting with `lock.wait` events.
 *     An unreachable provider falls back to the per-host lock with a warning — or, in strict mode,
 *     fails with CoordinationUnavailableError. The lease is renewed while the build runs and
 *     confirmed right before the push (LeaseKeeper).
 *  3. `remember`: the pushed digest goes into the cache before the lease is released, so the hosts
 *     waiting for it find the image without asking the registry.
 *
 * The cache never makes a build fail: an unreachable cache is reported (`cache.result` "error")
 * and the check runs without it.
 */
import { digestOfFound, type CheckOutcome } from "../checkers.js";
import { CancelledError, CoordinationUnavailableError } from "../errors.js";
import { emit, type EventListener } from "../events.js";
import type { Architecture } from "../layers.js";
import { redactSecrets } from "../redact.js";
import { isOciLayoutTarget } from "../reference.js";
import { FileLockProvider, type TakeFileLock } from "./fileLockProvider.js";
import { LeaseKeeper } from "./leaseKeeper.js";
import type { SelectedCheckCache, SelectedLockProvider } from "./select.js";
import type { CheckCacheKey, Lease, LockWait } from "./types.js";

/** A check's answer; `digest` when the cache knew it (or it was looked up to be cached). */
export type CoordinatedCheck = CheckOutcome & { digest?: string };

export interface BuildCoordinationOptions {
  /** The image URI (what events are about). */
  image: string;
  /** `<registry>/<name>` */
  repository: string;
  tag: string;
  platforms: readonly Architecture[];
  strict: boolean;
  signal: AbortSignal;
  onEvent: EventListener;
  lock: SelectedLockProvider;
  cache: SelectedCheckCache | undefined;
}

export interface CheckStep {
  /** False when the check is skipped anyway (force, tag latest, no checkers): the cache is not used. */
  enabled: boolean;
  /** After the lock: a cached "absent" is not trusted and nobody waits for anybody. */
  afterLock: boolean;
}

/** True when a repository's first component names a registry host (as the checkers decide it). */
function namesRegistryHost(repository: string): boolean {
  if (isOciLayoutTarget(repository)) return false; // a layout directory on this machine (oci:<dir>), no registry
  const slash = repository.indexOf("/");
  if (slash < 0) return false;
  const first = repository.slice(0, slash);
  return first.includes(".") || first.includes(":") || first === "localhost";
}

const message = (error: unknown) => redactSecrets((error as Error)?.message ?? String(error));

export class BuildCoordination {
  private readonly key: CheckCacheKey;

  constructor(private readonly options: BuildCoordinationOptions) {
    this.key = { repository: options.repository, tag: options.tag, platforms: [...options.platforms].sort() };
  }

  /** The selected cache, when there is one and the image lives in a registry. */
  private get cache() {
    return this.options.cache && namesRegistryHost(this.options.repository) ? this.options.cache : undefined;
  }

  /** Step 1 (see the file comment): the cache's answer, else `run()`'s, remembered. */
  async check(run: () => Promise<CheckOutcome | null>, step: CheckStep): Promise<CoordinatedCheck | null> {
    const selected = this.cache;
    if (!selected || !step.enabled) return run();
    const { cache, name } = selected;
    const { image, signal, onEvent } = this.options;
    let claimed = false;
    try {
      const lookup = await cache.lookup(this.key, { signal, singleFlight: !step.afterLock });
      claimed = lookup.claimed;
      const entry = lookup.entry;
      if (entry?.state === "present") {
        const digest = entry.stale ? await this.verify(entry.digest, entry.ageMs) : entry.digest;
        if (digest) {
          if (!entry.stale) emit(onEvent, { type: "cache.result", image, cache: name, result: "hit", digest, ageMs: entry.ageMs });
          return { uri: entry.uri, foundBy: `cache:${name}`, digest, results: [] };
        }
      } else if (entry?.state === "absent" && !step.afterLock) {
        emit(onEvent, { type: "cache.result", image, cache: name, result: "absent", ageMs: entry.ageMs });
        return { uri: null, results: [] };
      } else if (!entry) {
        emit(onEvent, { type: "cache.result", image, cache: name, result: "miss" });
      }
    } catch (error) {
      if (signal.aborted || CancelledError.isInstance(error)) throw error;
      emit(onEvent, { type: "cache.result", image, cache: name, result: "error", message: `checking without the ${name} cache: ${message(error)}` });
    }

    // Elected to check for everyone: the claim is always ended — by the answer, or given up.
    let answered = false;
    try {
      const outcome = await run();
      if (outcome?.uri) {
        const digest = await digestOfFound(outcome.uri, signal);
        if (!digest) return outcome;
        answered = true;
        await this.quietly(() => cache.putPresent(this.key, { uri: outcome.uri!, digest }));
        return { ...outcome, digest };
      }
      if (outcome !== null && outcome.results.length > 0 && outcome.results.every((r) => r.result === "absent")) {
        answered = true;
        await this.quietly(() => cache.putAbsent(this.key));
      }
      return outcome;
    } finally {
      if (claimed && !answered) await this.quietly(() => cache.releaseClaim(this.key));
    }
  }

  /** Step 3: the digest the build pushed, for every host that waits for it. */
  async remember(uri: string | null, digest: string | undefined): Promise<void> {
    const selected = this.cache;
    if (!selected || !uri || !digest) return;
    await this.quietly(() => selected.cache.putPresent(this.key, { uri, digest }));
  }

  /** Step 2: the build lease, from the selected provider or — when it is unreachable and not strict — the per-host lock. */
  async acquire(lockKey: string, takeFileLock: TakeFileLock): Promise<LeaseKeeper> {
    const { image, signal, onEvent, strict } = this.options;
    const started = Date.now();
    const file = new FileLockProvider(takeFileLock);
    const shared = this.options.lock.provider;
    let providerName = shared ? this.options.lock.name : "file";
    let fallback = false;
    const onWait = (wait: LockWait) =>
      emit(onEvent, {
        type: "lock.wait",
        image,
        lockPath: wait.location ?? lockKey,
        provider: providerName,
        ...(wait.holder ? { holder: wait.holder } : {}),
        waitedMs: wait.waitedMs,
      });
    let lease: Lease;
    if (!shared) {
      lease = await file.acquire({ key: lockKey, image, signal });
    } else {
      try {
        lease = await shared.acquire({ key: lockKey, image, signal, onWait });
      } catch (error) {
        if (signal.aborted || CancelledError.isInstance(error)) throw error;
        if (strict) {
          throw new CoordinationUnavailableError(
            `Cannot take the build lease for ${image} from the ${providerName} lock provider (strict mode): ${message(error)}`,
            {
              hint: `Check that ${providerName} is reachable from this host (address, TLS, credentials), or run without strict mode to fall back to the per-host lock.`,
              cause: error,
              details: { image, provider: providerName },
            },
          );
        }
        emit(onEvent, {
          type: "warning",
          image,
          message: `the ${providerName} lock provider is unreachable (${message(error)}); falling back to the per-host lock — hosts may build this image in parallel`,
        });
        providerName = "file";
        fallback = true;
        lease = await file.acquire({ key: lockKey, image, signal });
      }
    }
    // Reported with a shared provider only: the default per-host lock's events stay as they always were.
    if (shared)
      emit(onEvent, {
        type: "lock.acquired",
        image,
        provider: providerName,
        fencingToken: lease.fencingToken,
        waitedMs: Date.now() - started,
        ...(fallback ? { fallback } : {}),
      });
    return new LeaseKeeper(lease, { provider: providerName, image, onEvent });
  }

  /** The cached digest if the registry still has it (one HEAD by digest), else undefined (the entry is dropped). */
  private async verify(digest: string, ageMs: number): Promise<string | undefined> {
    const { cache, name } = this.cache!;
    const { image, repository, signal, onEvent } = this.options;
    let exists: boolean;
    try {
      const client = await verifyClient();
      exists = (await client.headManifest(`${repository}@${digest}`, { signal })) !== null;
    } catch (error) {
      if (signal.aborted) throw error;
      emit(onEvent, {
        type: "cache.result",
        image,
        cache: name,
        result: "error",
        digest,
        ageMs,
        message: `could not re-verify the cached digest: ${message(error)}`,
      });
      return undefined;
    }
    if (!exists) {
      emit(onEvent, {
        type: "cache.result",
        image,
        cache: name,
        result: "invalid",
        digest,
        ageMs,
        message: `the registry has no manifest ${digest} for ${repository}; entry dropped`,
      });
      await this.quietly(() => cache.invalidate(this.key));
      return undefined;
    }
    emit(onEvent, { type: "cache.result", image, cache: name, result: "verified", digest, ageMs });
    await this.quietly(() => cache.putPresent(this.key, { uri: `${repository}:${this.options.tag}`, digest }));
    return digest;
  }

  /** A cache write that failed is reported, never fatal. */
  private async quietly(write: () => Promise<void>): Promise<void> {
    const selected = this.cache;
    try {
      await write();
    } catch (error) {
      emit(this.options.onEvent, {
        type: "cache.result",
        image: this.options.image,
        cache: selected?.name ?? "cache",
        result: "error",
        message: `could not update the cache: ${message(error)}`,
      });
    }
  }
}

type HeadClient = { headManifest(reference: string, options: { signal?: AbortSignal }): Promise<{ digest: string } | null> };
let client: HeadClient | undefined;
/** One client per process, loaded on demand, with few retries and short deadlines (as for a found image's digest). */
async function verifyClient(): Promise<HeadClient> {
  client ??= new (await import("../registry/client.js")).RegistryClient({
    retry: { retries: 1, baseDelayMs: 200 },
    timeouts: { connectMs: 3_000, idleMs: 10_000, totalMs: 15_000 },
  });
  return client;
}
