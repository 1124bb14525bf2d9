/**
 * RedisLockProvider: build leases shared by every host that talks to one Redis.
 *
 * A lease is a key `<prefix>{lock:<sha256(key)>}:lease` set with `SET NX PX <leaseMs>` to a token
 * naming its holder (`host/pid/random`); the fencing token is an INCR of `…:fence` in the same
 * script. Renewal and release compare the token first (Lua), so a holder whose lease expired can
 * neither extend nor delete its successor's. A waiter polls (with jitter) and reports who holds the
 * lease and how long it still runs; when the holder dies its lease simply expires, and a waiter
 * takes over within `leaseMs` plus one poll.
 *
 * What one Redis instance guarantees (and what it does not) is in the package README.
 */
import { createHash, randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { CancelledError, type Lease, type LeaseRequest, type LockProvider } from "@kiln/core";
import { sharedConnection, type RedisConnection } from "./connection.js";
import { millis, type RedisConnectionOptions } from "./settings.js";
import { ACQUIRE, RELEASE, RENEW } from "./scripts.js";

export interface RedisLockProviderOptions extends RedisConnectionOptions {
  /** How long a lease lasts without renewal (the engine renews every third). Default KILN_REDIS_LEASE_MS, else 30 s. */
  leaseMs?: number;
  /** How often a waiter asks again (±25 % jitter). Default 250 ms. */
  pollMs?: number;
  /** How often a waiter reports progress while nothing changes. Default 5 s. */
  progressMs?: number;
}

export const DEFAULT_LEASE_MS = 30_000;

export class RedisLockProvider implements LockProvider {
  readonly name = "redis";
  readonly leaseMs: number;
  private readonly pollMs: number;
  private readonly progressMs: number;
  private readonly connection: RedisConnection;

  constructor(options: RedisLockProviderOptions = {}) {
    const env = options.env ?? process.env;
    this.leaseMs = millis("leaseMs", options.leaseMs, env, "KILN_REDIS_LEASE_MS", DEFAULT_LEASE_MS, 500, 24 * 60 * 60 * 1000);
    this.pollMs = millis("pollMs", options.pollMs, env, "KILN_REDIS_POLL_MS", 250, 10, 60_000);
    this.progressMs = options.progressMs ?? 5_000;
    this.connection = sharedConnection(options);
  }

  async acquire(request: LeaseRequest): Promise<Lease> {
    const { signal } = request;
    const id = createHash("sha256").update(request.key).digest("hex").slice(0, 40);
    const leaseKey = `${this.connection.keyPrefix}{lock:${id}}:lease`;
    const fenceKey = `${this.connection.keyPrefix}{lock:${id}}:fence`;
    const token = `${hostname()}/${process.pid}/${randomBytes(9).toString("base64url")}`;
    const started = Date.now();
    let waited = false;
    let lastHolder: string | undefined;
    let lastReport = 0;
    for (;;) {
      if (signal?.aborted) throw new CancelledError(`Cancelled while waiting for the build lease of ${request.image}`, { cause: signal.reason });
      const reply = (await this.connection.run("taking the build lease", (c) =>
        this.connection.script(c, ACQUIRE, [leaseKey, fenceKey], [token, this.leaseMs]),
      )) as [number, unknown, unknown?];
      if (Number(reply[0]) === 1) {
        return this.lease(leaseKey, token, Number(reply[1]), waited);
      }
      waited = true;
      const holder = holderOf(String(reply[1] ?? ""));
      const remaining = Number(reply[2]);
      const now = Date.now();
      if (holder !== lastHolder || now - lastReport >= this.progressMs) {
        lastHolder = holder;
        lastReport = now;
        request.onWait?.({
          location: leaseKey,
          waitedMs: now - started,
          ...(holder ? { holder } : {}),
          ...(remaining > 0 ? { remainingLeaseMs: remaining } : {}),
        });
      }
      // Never sleep past the moment the holder's lease would run out (a crashed holder is replaced promptly).
      const pause = Math.max(10, Math.min(this.pollMs * (0.75 + Math.random() / 2), remaining > 0 ? remaining + 5 : this.pollMs));
      try {
        await sleep(pause, undefined, signal ? { signal } : {});
      } catch {
        throw new CancelledError(`Cancelled while waiting for the build lease of ${request.image}`, { cause: signal?.reason });
      }
    }
  }

  async close(): Promise<void> {
    await this.connection.close();
  }

  private lease(leaseKey: string, token: string, fencingToken: number, waited: boolean): Lease {
    const { connection, leaseMs } = this;
    return {
      fencingToken,
      waited,
      holder: holderOf(token) ?? token,
      location: leaseKey,
      leaseMs,
      renew: async () => Number(await connection.run("renewing the build lease", (c) => connection.script(c, RENEW, [leaseKey], [token, leaseMs]))) === 1,
      release: async () => {
        await connection.run("releasing the build lease", (c) => connection.script(c, RELEASE, [leaseKey], [token]));
      },
    };
  }
}

/** `host/pid` from a lease token `host/pid/random`. */
function holderOf(token: string): string | undefined {
  const cut = token.lastIndexOf("/");
  return cut > 0 ? token.slice(0, cut) : undefined;
}
