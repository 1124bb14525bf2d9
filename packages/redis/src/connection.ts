/**
 * One Redis connection per Redis target and process, shared by the lock provider and the cache.
 *
 * Never hang, never keep a process alive:
 *  - every command has a deadline (commandTimeout; connectTimeout for the connection) and no
 *    reconnect loop — an unreachable Redis fails the call within seconds with a
 *    CoordinationUnavailableError, which the engine turns into a fallback (or, in strict mode, a
 *    failure); the next command connects again;
 *  - the socket is referenced only while a command is in flight, so a finished `kiln` process exits at once.
 *
 * The connection is Kiln's own small RESP client (respClient.ts) unless the caller passes a client
 * (an ioredis `Redis` or `Cluster` for Sentinel or Cluster): anything with `call(command, ...args)`.
 * Errors name the server by `redis[s]://host:port/db` only: no credentials in messages or events.
 */
import { CoordinationUnavailableError } from "@kiln/core";
import { redactSecrets } from "@kiln/core/plugin";
import { RespClient } from "./respClient.js";
import { resolveSettings, type RedisClientLike, type RedisConnectionOptions, type RedisSettings } from "./settings.js";
import type { RedisScript } from "./scripts.js";

type Client = RedisClientLike;

export class RedisConnection {
  readonly address: string;
  readonly keyPrefix: string;
  private readonly client: Client;
  /** Our own client (closed by close()); undefined for a client the caller passed in: its lifecycle is theirs. */
  private readonly own: RespClient | undefined;

  constructor(options: RedisConnectionOptions, settings?: RedisSettings) {
    if (options.client) {
      this.client = options.client;
      this.own = undefined;
      this.address = "redis (client passed in options)";
      this.keyPrefix = options.keyPrefix ?? (options.env ?? process.env).KILN_REDIS_PREFIX ?? "kiln:";
      return;
    }
    const resolved = settings ?? resolveSettings(options);
    this.address = resolved.address;
    this.keyPrefix = resolved.keyPrefix;
    const own = new RespClient({
      host: resolved.host,
      port: resolved.port,
      db: resolved.db,
      ...(resolved.username ? { username: resolved.username } : {}),
      ...(resolved.password ? { password: resolved.password } : {}),
      ...(resolved.tls ? { tls: resolved.tls } : {}),
      connectTimeoutMs: resolved.connectTimeoutMs,
      commandTimeoutMs: resolved.commandTimeoutMs,
      connectionName: "kiln",
    });
    this.own = own;
    this.client = { call: (command, ...args) => own.command(command, ...args) };
  }

  /** Runs one operation; any failure becomes a CoordinationUnavailableError naming the server. */
  async run<T>(what: string, operation: (client: Client) => Promise<T>): Promise<T> {
    try {
      return await operation(this.client);
    } catch (error) {
      throw this.unavailable(what, error);
    }
  }

  /** Runs a Lua script by its SHA, sending its text only when the server does not know it yet. */
  async script(client: Client, script: RedisScript, keys: string[], args: Array<string | number>): Promise<unknown> {
    try {
      return await client.call("EVALSHA", script.sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (!/NOSCRIPT/.test((error as Error)?.message ?? "")) throw error;
      return client.call("EVAL", script.lua, keys.length, ...keys, ...args);
    }
  }

  /** Closes our own connection (a passed-in client is left alone). */
  async close(): Promise<void> {
    await this.own?.close();
  }

  private unavailable(what: string, error: unknown): CoordinationUnavailableError {
    if (CoordinationUnavailableError.isInstance(error)) return error as CoordinationUnavailableError;
    const text = redactSecrets((error as Error)?.message ?? String(error));
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
