/**
 * Where Redis is and how to talk to it: options first, else the environment.
 *
 *   KILN_REDIS_URL            redis://[user[:password]@]host[:port][/db]   (rediss:// for TLS)
 *   KILN_REDIS_USERNAME, KILN_REDIS_PASSWORD   credentials kept out of the URL (win over the URL's)
 *   KILN_REDIS_DB             database number (wins over the URL's path)
 *   KILN_REDIS_PREFIX         key prefix, default "kiln:" (give each team or environment its own)
 *   KILN_REDIS_TLS_CA_FILE    CA bundle for the server certificate (PEM); setting it implies TLS
 *   KILN_REDIS_TLS_CERT_FILE, KILN_REDIS_TLS_KEY_FILE   client certificate (when the server asks for one)
 *   KILN_REDIS_TLS_SERVERNAME the name the server certificate must carry (default: the URL's host)
 *   KILN_REDIS_CONNECT_TIMEOUT_MS (default 5000), KILN_REDIS_COMMAND_TIMEOUT_MS (default 5000)
 *
 * Credentials are never part of what `describe()` returns, nor of any message.
 */
import { readFileSync } from "node:fs";
import net from "node:net";
import { ConfigError } from "@kiln/core";
import { describeValue, redactUrl } from "@kiln/core/plugin";

export interface RedisTlsOptions {
  /** PEM CA bundle (contents), or use `caFile`. */
  ca?: string | Buffer;
  caFile?: string;
  cert?: string | Buffer;
  certFile?: string;
  key?: string | Buffer;
  keyFile?: string;
  servername?: string;
  /** Default true. */
  rejectUnauthorized?: boolean;
}

/**
 * A Redis client of your own (an ioredis `Redis` or `Cluster` fits): Kiln sends every command
 * through `call(command, ...args)` (EVALSHA/EVAL of its scripts, DEL).
 */
export interface RedisClientLike {
  call(command: string, ...args: Array<string | number>): Promise<unknown>;
}

export interface RedisConnectionOptions {
  /** `redis://[user[:password]@]host[:port][/db]` or `rediss://…` (TLS). Default: KILN_REDIS_URL. */
  url?: string;
  username?: string;
  password?: string;
  db?: number;
  /** TLS settings (true: TLS with the system CAs). `rediss://` or a CA file turns TLS on too. */
  tls?: boolean | RedisTlsOptions;
  /** Prefix of every key Kiln writes. Default KILN_REDIS_PREFIX, else "kiln:". */
  keyPrefix?: string;
  connectTimeoutMs?: number;
  commandTimeoutMs?: number;
  /**
   * A client of your own — `new Redis({ sentinels, name })` for Sentinel, `new Cluster([...])` for
   * Redis Cluster. Its lifecycle is yours (Kiln never closes it); url/credentials/TLS options are then unused.
   */
  client?: RedisClientLike;
  /** Environment read for the KILN_REDIS_* settings (default process.env). */
  env?: NodeJS.ProcessEnv;
}

export interface ResolvedTls {
  ca?: Buffer | string;
  cert?: Buffer | string;
  key?: Buffer | string;
  servername?: string;
  rejectUnauthorized: boolean;
}

export interface RedisSettings {
  host: string;
  port: number;
  db: number;
  username?: string;
  password?: string;
  tls?: ResolvedTls;
  keyPrefix: string;
  connectTimeoutMs: number;
  commandTimeoutMs: number;
  /** `redis[s]://host:port/db` — no credentials, for messages. */
  address: string;
  /** Identifies the connection target (settings, not secrets in clear) so providers share one connection. */
  identity: string;
}

export const DEFAULT_KEY_PREFIX = "kiln:";
const DEFAULT_TIMEOUT_MS = 5_000;

/** A whole number of milliseconds from options or the environment, within bounds, else the default. */
export function millis(name: string, option: number | undefined, env: NodeJS.ProcessEnv, envName: string, fallback: number, min: number, max: number): number {
  const raw = option ?? (env[envName] === undefined || env[envName] === "" ? undefined : Number(env[envName]));
  if (raw === undefined) return fallback;
  if (!Number.isInteger(raw) || raw < min || raw > max) {
    throw new ConfigError(
      `Invalid ${option !== undefined ? name : envName} ${describeValue(option ?? env[envName])}: expected whole milliseconds from ${min} to ${max}`,
      {
        hint: `Unset it for the default (${fallback} ms) or give a number of milliseconds.`,
      },
    );
  }
  return raw;
}

function readPem(what: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new ConfigError(`Cannot read the Redis ${what} ${describeValue(file)}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, {
      hint: `Point KILN_REDIS_TLS_${what === "CA file" ? "CA" : what === "client certificate" ? "CERT" : "KEY"}_FILE at a readable PEM file.`,
    });
  }
}

export function resolveSettings(options: RedisConnectionOptions = {}): RedisSettings {
  const env = options.env ?? process.env;
  const rawUrl = options.url ?? env.KILN_REDIS_URL;
  if (!rawUrl) {
    throw new ConfigError("No Redis to coordinate through: KILN_REDIS_URL is not set", {
      hint: "Set KILN_REDIS_URL=redis://host:6379/0 (rediss:// for TLS; credentials in KILN_REDIS_USERNAME/KILN_REDIS_PASSWORD), or pass { url } to the provider.",
    });
  }
  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch {
    throw new ConfigError(`Invalid Redis URL ${describeValue(redactUrl(rawUrl))}`, {
      hint: "Write it as redis://[user[:password]@]host[:port][/db] or rediss://… for TLS.",
    });
  }
  if (url.protocol !== "redis:" && url.protocol !== "rediss:") {
    throw new ConfigError(`Invalid Redis URL ${describeValue(redactUrl(rawUrl))}: the scheme must be redis:// or rediss://`, {
      hint: "Write it as redis://host:6379/0 or rediss://host:6380/0.",
    });
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = url.port ? Number(url.port) : 6379;
  const dbText = options.db !== undefined ? String(options.db) : env.KILN_REDIS_DB || url.pathname.replace(/^\//, "") || "0";
  if (!/^\d{1,2}$/.test(dbText)) {
    throw new ConfigError(`Invalid Redis database ${describeValue(dbText)}: expected a number (0–15 on a default server)`, {
      hint: "Use redis://host:6379/0, KILN_REDIS_DB=0 or { db: 0 }.",
    });
  }
  const username = options.username ?? (env.KILN_REDIS_USERNAME || undefined) ?? (url.username ? decodeURIComponent(url.username) : undefined);
  const password = options.password ?? (env.KILN_REDIS_PASSWORD || undefined) ?? (url.password ? decodeURIComponent(url.password) : undefined);

  const tlsOption = typeof options.tls === "object" ? options.tls : {};
  const caFile = tlsOption.caFile ?? (env.KILN_REDIS_TLS_CA_FILE || undefined);
  const certFile = tlsOption.certFile ?? (env.KILN_REDIS_TLS_CERT_FILE || undefined);
  const keyFile = tlsOption.keyFile ?? (env.KILN_REDIS_TLS_KEY_FILE || undefined);
  const useTls = options.tls === true || typeof options.tls === "object" || url.protocol === "rediss:" || caFile !== undefined;
  let tls: ResolvedTls | undefined;
  if (useTls && options.tls !== false) {
    tls = { rejectUnauthorized: tlsOption.rejectUnauthorized ?? true };
    const ca = tlsOption.ca ?? (caFile ? readPem("CA file", caFile) : undefined);
    const cert = tlsOption.cert ?? (certFile ? readPem("client certificate", certFile) : undefined);
    const key = tlsOption.key ?? (keyFile ? readPem("client key", keyFile) : undefined);
    if (ca) tls.ca = ca;
    if (cert) tls.cert = cert;
    if (key) tls.key = key;
    const servername = tlsOption.servername ?? (env.KILN_REDIS_TLS_SERVERNAME || undefined) ?? (net.isIP(host) ? undefined : host);
    if (servername) tls.servername = servername;
  }
  const keyPrefix = options.keyPrefix ?? env.KILN_REDIS_PREFIX ?? DEFAULT_KEY_PREFIX;
  const connectTimeoutMs = millis("connectTimeoutMs", options.connectTimeoutMs, env, "KILN_REDIS_CONNECT_TIMEOUT_MS", DEFAULT_TIMEOUT_MS, 50, 60_000);
  const commandTimeoutMs = millis("commandTimeoutMs", options.commandTimeoutMs, env, "KILN_REDIS_COMMAND_TIMEOUT_MS", DEFAULT_TIMEOUT_MS, 50, 60_000);
  const address = `${tls ? "rediss" : "redis"}://${host.includes(":") ? `[${host}]` : host}:${port}/${Number(dbText)}`;
  const identity = JSON.stringify([
    address,
    username ?? "",
    password ?? "",
    caFile ?? "",
    certFile ?? "",
    keyFile ?? "",
    tls?.servername ?? "",
    connectTimeoutMs,
    commandTimeoutMs,
  ]);
  return {
    host,
    port,
    db: Number(dbText),
    keyPrefix,
    connectTimeoutMs,
    commandTimeoutMs,
    address,
    identity,
    ...(username ? { username } : {}),
    ...(password ? { password } : {}),
    ...(tls ? { tls } : {}),
  };
}
