/**
 * RedisCheckCache: existence checks shared by every host that talks to one Redis, so a thousand
 * runners asking about the same tags cost the registry one check per tag and TTL.
 *
 * Entry `<prefix>{check:<sha256(repository, tag, platforms)>}:entry`:
 *  - present: `{"v":1,"state":"present","uri","digest","life"}` kept for `retainMs` (default 7 days).
 *    Its age is `life - PTTL`, i.e. measured by Redis's clock alone (hosts' clocks may disagree).
 *    Older than `ttlMs` (default 5 min) it is "stale": the engine re-verifies the digest with one
 *    HEAD before trusting it, and a digest the registry does not have is dropped.
 *  - absent: `{"v":1,"state":"absent","life"}` kept for `absentTtlMs` only (default 5 s, at most 60 s).
 *
 * Single flight: on a miss, the first caller claims `…:fill` (`SET NX PX claimMs`, default 5 s) and
 * checks, renewing its claim every third of that while it works — a slow registry does not release
 * the herd, a crashed claimer is replaced within `claimMs`. The others poll the entry until it
 * appears; when the claim goes away without an answer, the next poller claims it and checks; nobody
 * waits longer than `fillWaitMs` (default 60 s) — then it checks on its own. Entries that do not
 * parse are treated as a miss.
 */
import { createHash, randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { CancelledError, type CachedCheck, type CheckCache, type CheckCacheKey, type CheckCacheLookup, type CheckCacheLookupOptions } from "@kiln/core";
import { sharedConnection, type RedisConnection } from "./connection.js";
import { millis, type RedisConnectionOptions } from "./settings.js";
import { LOOKUP, PUT, RELEASE, RENEW } from "./scripts.js";

export interface RedisCheckCacheOptions extends RedisConnectionOptions {
  /** A present entry older than this is re-verified before use. Default KILN_REDIS_CACHE_TTL_MS, else 5 min. */
  ttlMs?: number;
  /** How long "absent" is remembered. Default KILN_REDIS_ABSENT_TTL_MS, else 5 s; at most 60 s. */
  absentTtlMs?: number;
  /** How long a present entry is kept at all (re-verifiable). Default 7 days. */
  retainMs?: number;
  /** How long a caller waits at most for another host's check of the same key. Default 60 s. */
  fillWaitMs?: number;
  /** How long a claim to check for everyone lasts unless its holder renews it. Default 5 s. */
  claimMs?: number;
  /** First poll interval while waiting for it (doubling up to 500 ms, so a thousand waiters stay cheap). Default 25 ms. */
  fillPollMs?: number;
}

export const DEFAULT_CACHE_TTL_MS = 5 * 60_000;
export const DEFAULT_ABSENT_TTL_MS = 5_000;
export const MAX_ABSENT_TTL_MS = 60_000;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;

interface StoredEntry {
  v: 1;
  state: "present" | "absent";
  uri?: string;
  digest?: string;
  /** The PX the entry was written with, so its age can be read from its PTTL. */
  life: number;
}

export class RedisCheckCache implements CheckCache {
  readonly name = "redis";
  readonly ttlMs: number;
  readonly absentTtlMs: number;
  readonly retainMs: number;
  private readonly fillWaitMs: number;
  private readonly fillPollMs: number;
  private readonly claimMs: number;
  /** Renewal timers of the claims this instance holds, by fill key. */
  private readonly claims = new Map<string, ReturnType<typeof setInterval>>();
  private readonly connection: RedisConnection;
  /** One claim token per process: claims are compared before they are released. */
  private readonly claimToken = `${process.pid}/${randomBytes(9).toString("base64url")}`;

  constructor(options: RedisCheckCacheOptions = {}) {
    const env = options.env ?? process.env;
    this.ttlMs = millis("ttlMs", options.ttlMs, env, "KILN_REDIS_CACHE_TTL_MS", DEFAULT_CACHE_TTL_MS, 0, 30 * 24 * 60 * 60 * 1000);
    this.absentTtlMs = millis("absentTtlMs", options.absentTtlMs, env, "KILN_REDIS_ABSENT_TTL_MS", DEFAULT_ABSENT_TTL_MS, 1, MAX_ABSENT_TTL_MS);
    this.retainMs = Math.max(
      this.ttlMs,
      millis("retainMs", options.retainMs, env, "KILN_REDIS_CACHE_RETAIN_MS", 7 * 24 * 60 * 60 * 1000, 1_000, 365 * 24 * 60 * 60 * 1000),
    );
    this.fillWaitMs = millis("fillWaitMs", options.fillWaitMs, env, "KILN_REDIS_FILL_WAIT_MS", 60_000, 0, 600_000);
    this.claimMs = millis("claimMs", options.claimMs, env, "KILN_REDIS_CLAIM_MS", 5_000, 100, 600_000);
    this.fillPollMs = options.fillPollMs ?? 25;
    this.connection = sharedConnection(options);
  }

  /** The Redis keys of a check (exported for tests and operators: `redis-cli GET …`). */
  keysOf(key: CheckCacheKey): { entry: string; fill: string } {
    const id = createHash("sha256")
      .update(JSON.stringify([key.repository, key.tag, [...key.platforms].sort()]))
      .digest("hex")
      .slice(0, 40);
    const base = `${this.connection.keyPrefix}{check:${id}}`;
    return { entry: `${base}:entry`, fill: `${base}:fill` };
  }

  async lookup(key: CheckCacheKey, options: CheckCacheLookupOptions = {}): Promise<CheckCacheLookup> {
    const keys = this.keysOf(key);
    const claim = options.singleFlight && this.fillWaitMs > 0 ? this.claimToken : "";
    const deadline = Date.now() + this.fillWaitMs;
    for (let polls = 0; ; polls++) {
      const [value, pttl, state] = (await this.connection.run("reading the check cache", (c) =>
        this.connection.script(c, LOOKUP, [keys.entry, keys.fill], [claim, this.claimMs]),
      )) as [unknown, unknown, unknown];
      const entry = typeof value === "string" && value ? this.parse(value, Number(pttl)) : null;
      if (entry) return { entry, claimed: false };
      const claimState = Number(state);
      if (claimState === 1) this.keepClaim(keys.fill);
      if (claimState !== 2) return { entry: null, claimed: claimState === 1 };
      // Another host checks this very key now: wait for its answer (bounded), never for ever.
      if (Date.now() >= deadline) return { entry: null, claimed: false };
      try {
        const pause = Math.min(500, this.fillPollMs * 2 ** Math.min(polls, 5)) * (0.75 + Math.random() / 2);
        await sleep(Math.min(pause, Math.max(1, deadline - Date.now())), undefined, options.signal ? { signal: options.signal } : {});
      } catch {
        throw new CancelledError("Cancelled while waiting for a shared existence check", { cause: options.signal?.reason });
      }
    }
  }

  async putPresent(key: CheckCacheKey, value: { uri: string; digest: string }): Promise<void> {
    const stored: StoredEntry = { v: 1, state: "present", uri: value.uri, digest: value.digest, life: this.retainMs };
    await this.put(key, stored);
  }

  async putAbsent(key: CheckCacheKey): Promise<void> {
    await this.put(key, { v: 1, state: "absent", life: this.absentTtlMs });
  }

  async invalidate(key: CheckCacheKey): Promise<void> {
    const { entry } = this.keysOf(key);
    await this.connection.run("dropping a check cache entry", (c) => c.call("DEL", entry));
  }

  async releaseClaim(key: CheckCacheKey): Promise<void> {
    const { fill } = this.keysOf(key);
    this.dropClaim(fill);
    await this.connection.run("releasing a check claim", (c) => this.connection.script(c, RELEASE, [fill], [this.claimToken]));
  }

  async close(): Promise<void> {
    for (const fill of [...this.claims.keys()]) this.dropClaim(fill);
    await this.connection.close();
  }

  /** Renews a claim while this caller checks (never past fillWaitMs: a forgotten claim must not live on). */
  private keepClaim(fill: string): void {
    this.dropClaim(fill);
    const started = Date.now();
    const timer = setInterval(
      () => {
        if (Date.now() - started > this.fillWaitMs) return this.dropClaim(fill);
        this.connection
          .run("renewing a check claim", (c) => this.connection.script(c, RENEW, [fill], [this.claimToken, this.claimMs]))
          .then(
            (held) => Number(held) === 1 || this.dropClaim(fill),
            () => undefined,
          );
      },
      Math.max(50, Math.floor(this.claimMs / 3)),
    );
    timer.unref();
    this.claims.set(fill, timer);
  }

  private dropClaim(fill: string): void {
    const timer = this.claims.get(fill);
    if (timer) clearInterval(timer);
    this.claims.delete(fill);
  }

  private async put(key: CheckCacheKey, stored: StoredEntry): Promise<void> {
    const keys = this.keysOf(key);
    this.dropClaim(keys.fill);
    await this.connection.run("writing the check cache", (c) => this.connection.script(c, PUT, [keys.entry, keys.fill], [JSON.stringify(stored), stored.life]));
  }

  /** A stored entry as the engine sees it, or null when it does not parse (treated as a miss). */
  private parse(value: string, pttl: number): CachedCheck | null {
    let stored: Partial<StoredEntry>;
    try {
      stored = JSON.parse(value) as Partial<StoredEntry>;
    } catch {
      return null;
    }
    const life = typeof stored.life === "number" && stored.life > 0 ? stored.life : undefined;
    if (stored.v !== 1 || life === undefined) return null;
    const ageMs = Math.max(0, pttl >= 0 ? life - pttl : 0);
    if (stored.state === "absent") return ageMs <= this.absentTtlMs ? { state: "absent", ageMs } : null;
    if (stored.state !== "present" || typeof stored.uri !== "string" || typeof stored.digest !== "string" || !DIGEST.test(stored.digest)) return null;
    return { state: "present", uri: stored.uri, digest: stored.digest, ageMs, stale: ageMs > this.ttlMs };
  }
}
