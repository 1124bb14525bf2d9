/**
 * One ioredis connection per Redis target and process, shared by the lock provider and the cache.
 *
 * Never hang, never keep a process alive:
 *  - every command has a deadline (commandTimeout; connectTimeout for the connection) and at most
 *    one reconnect attempt (maxRetriesPerRequest 1) — an unreachable Redis fails the call within
 *    seconds with a CoordinationUnavailableError, which the engine turns into a fallback (or, in
 *    strict mode, a failure);
 *  - the socket is referenced only while a command is in flight, and reconnecting stops when nothing
 *    is waiting (the next command connects again), so a finished `kiln` process exits at once.
 *
 * Errors name the server by `redis[s]://host:port/db` only: no credentials in messages or events.
 */
import { Redis, type Cluster } from "ioredis";
import { CoordinationUnavailableError, redactSecrets } from "@kiln/core";
import { resolveSettings, type RedisConnectionOptions, type RedisSettings } from "./settings.js";
import type { RedisScript } from "./scripts.js";

type Client = Redis | Cluster;

export class RedisConnection {
  readonly address: string;
  readonly keyPrefix: string;
  private readonly client: Client;
  /** False for a client the caller passed in: its lifecycle is theirs. */
  private readonly owned: boolean;
  private inFlight = 0;
  private lastError: Error | undefined;

  constructor(options: RedisConnectionOptions, settings?: RedisSettings) {
    if (options.client) {
      this.client = options.client;
      this.owned = false;
      this.address = "redis (client passed in options)";
      this.keyPrefix = options.keyPrefix ?? (options.env ?? process.env).KILN_REDIS_PREFIX ?? "kiln:";
      return;
    }
    const resolved = settings ?? resolveSettings(options);
    this.owned = true;
    this.address = resolved.address;
    this.keyPrefix = resolved.keyPrefix;
    const client = new Redis({
      host: resolved.host,
      port: resolved.port,
      db: resolved.db,
      ...(resolved.username ? { username: resolved.username } : {}),
      ...(resolved.password ? { password: resolved.password } : {}),
      ...(resolved.tls ? { tls: resolved.tls } : {}),
      lazyConnect: true,
      connectTimeout: resolved.connectTimeoutMs,
      commandTimeout: resolved.commandTimeoutMs,
      maxRetriesPerRequest: 1,
      // Reconnect only for a command that waits; idle, the connection may end (the next command reconnects).
      retryStrategy: () => (this.inFlight > 0 ? 200 : null),
      enableReadyCheck: false,
      connectionName: "kiln",
      disableClientInfo: true,
    });
    // ioredis reports connection trouble as events too; kept for a better message, never printed.
    client.on("error", (error: Error) => {
      this.lastError = error;
    });
    client.on("connect", () => this.updateSocketRef());
    this.client = client;
  }

  /** Runs one operation; any failure becomes a CoordinationUnavailableError naming the server. */
  async run<T>(what: string, operation: (client: Client) => Promise<T>): Promise<T> {
    this.inFlight++;
    this.updateSocketRef();
    try {
      if (this.owned) {
        const redis = this.client as Redis;
        if (redis.status === "wait" || redis.status === "end") redis.connect().catch(() => undefined);
      }
      return await operation(this.client);
    } catch (error) {
      throw this.unavailable(what, error);
    } finally {
      this.inFlight--;
      this.updateSocketRef();
    }
  }

  /** Runs a Lua script by its SHA, sending its text only when the server does not know it yet. */
  async script(client: Client, script: RedisScript, keys: string[], args: Array<string | number>): Promise<unknown> {
    try {
      return await client.evalsha(script.sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (!/NOSCRIPT/.test((error as Error)?.message ?? "")) throw error;
      return client.eval(script.lua, keys.length, ...keys, ...args);
    }
  }

  /** Closes an owned connection (a passed-in client is left alone). */
  async close(): Promise<void> {
    if (!this.owned) return;
    const redis = this.client as Redis;
    if (redis.status === "end" || redis.status === "wait") return;
    try {
      await redis.quit();
    } catch {
      redis.disconnect();
    }
  }

  /** The socket keeps the process alive only while a command is in flight. */
  private updateSocketRef(): void {
    if (!this.owned) return;
    const stream = (this.client as Redis).stream as { ref?: () => void; unref?: () => void } | undefined;
    if (this.inFlight > 0) stream?.ref?.();
    else stream?.unref?.();
  }

  private unavailable(what: string, error: unknown): CoordinationUnavailableError {
    if (CoordinationUnavailableError.isInstance(error)) return error as CoordinationUnavailableError;
    const own = (error as Error)?.message ?? String(error);
    // "Reached the max retries per request limit" says less than the connection error behind it.
    const reason = /max retries per request|Connection is closed/i.test(own) && this.lastError ? `${own} (${this.lastError.message})` : own;
    const text = redactSecrets(reason);
    const auth = /WRONGPASS|NOAUTH|NOPERM|invalid username-password/i.test(text);
    const tls = /certificate|self[- ]signed|SSL|TLS|EPROTO/i.test(text);
    return new CoordinationUnavailableError(`Redis at ${this.address}: ${what} failed: ${text}`, {
      hint: auth
        ? "Check the Redis credentials (KILN_REDIS_USERNAME/KILN_REDIS_PASSWORD or the URL's user:password) and that the ACL user may use the key prefix's keys and EVAL/EVALSHA."
        : tls
          ? "Check the TLS settings: rediss:// in KILN_REDIS_URL, KILN_REDIS_TLS_CA_FILE for a private CA, KILN_REDIS_TLS_SERVERNAME when the certificate names another host."
          : "Check that Redis is running and reachable from this host (KILN_REDIS_URL); Kiln falls back to the per-host lock unless in strict mode.",
      cause: error,
      details: { address: this.address, operation: what },
    });
  }
}

const shared = new Map<string, RedisConnection>();

/** The process's connection for these options (the lock provider and the cache share it). */
export function sharedConnection(options: RedisConnectionOptions): RedisConnection {
  if (options.client) return new RedisConnection(options);
  const settings = resolveSettings(options);
  const key = `${settings.identity}\0${settings.keyPrefix}`;
  let connection = shared.get(key);
  if (!connection) {
    connection = new RedisConnection(options, settings);
    shared.set(key, connection);
  }
  return connection;
}

/** Closes every shared connection (tests; a process need not call it). */
export async function closeSharedConnections(): Promise<void> {
  const all = [...shared.values()];
  shared.clear();
  await Promise.all(all.map((c) => c.close()));
}
