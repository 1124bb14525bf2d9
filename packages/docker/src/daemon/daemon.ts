/**
 * The Engine as Kiln uses it: dockerode (imported lazily — it is heavy and a CLI run that finds its
 * image never needs it), one `ping` that also tells whether the daemon has BuildKit, and raw dials
 * for the streaming endpoints so every request can be aborted and every line of its answer read.
 */
import type { IncomingMessage } from "node:http";
import type { Readable } from "node:stream";
import { CancelledError, ConfigError, DaemonUnavailableError, KilnError } from "@kiln/core";
import type Docker from "dockerode";
import { resolveDockerConnection, type DockerConnection } from "./connection.js";
import { excludeModemFromDebugEnv, excludeModemFromLoadedDebug } from "./modemDebug.js";

export interface DaemonInfo {
  apiVersion: string;
  version: string;
  /** BuildKit usable through `POST /build?version=2` (Builder-Version header 2, or API ≥ 1.39 on Linux). */
  buildkit: boolean;
  os: string;
  arch: string;
}

export interface DialOptions {
  method: "GET" | "POST" | "HEAD" | "DELETE";
  path: string;
  query?: Record<string, unknown>;
  body?: Readable;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  statusCodes?: Record<number, true | string>;
}

export class DockerDaemon {
  private client: Docker | undefined;
  private info: DaemonInfo | undefined;

  constructor(readonly connection: DockerConnection = resolveDockerConnection()) {}

  static fromEnv(env: NodeJS.ProcessEnv = process.env): DockerDaemon {
    return new DockerDaemon(resolveDockerConnection(env));
  }

  async docker(): Promise<Docker> {
    if (!this.client) {
      // docker-modem would log request headers (credentials) under DEBUG=modem / DEBUG=*.
      excludeModemFromDebugEnv();
      const { default: DockerCtor } = await import("dockerode");
      excludeModemFromLoadedDebug();
      try {
        this.client = new DockerCtor(this.connection.options);
      } catch (error) {
        throw clientSetupFailed(error);
      }
    }
    return this.client;
  }

  /** Pings the daemon (a read) and learns its version and builder; maps "not there" to DaemonUnavailableError. */
  async describe(signal?: AbortSignal): Promise<DaemonInfo> {
    if (this.info) return this.info;
    const docker = await this.docker();
    try {
      const ping = await this.dial({ method: "GET", path: "/_ping", signal });
      const builderHeader = String(ping.headers["builder-version"] ?? "");
      ping.resume();
      const version = (await docker.version({ abortSignal: signal } as never)) as unknown as Record<string, string>;
      const apiVersion = version.ApiVersion ?? "1.12";
      const os = version.Os ?? "linux";
      // The header names the daemon's *default* builder (absent on Debian's 20.10); the API answers
      // `version=2` builds on any Linux engine from API 1.39.
      const buildkit = builderHeader === "2" || (os === "linux" && compareApi(apiVersion, "1.39") >= 0);
      this.info = { apiVersion, version: version.Version ?? "unknown", buildkit, os, arch: version.Arch ?? "amd64" };
      return this.info;
    } catch (error) {
      throw this.translate(error, signal);
    }
  }

  /** A raw streaming request; resolves with the response once its status is accepted. */
  async dial(options: DialOptions): Promise<IncomingMessage> {
    const docker = await this.docker();
    const modem = docker.modem as { dial(o: unknown, cb: (err: unknown, res: IncomingMessage) => void): void };
    const query = Object.fromEntries(Object.entries(options.query ?? {}).filter(([, v]) => v !== undefined));
    return new Promise<IncomingMessage>((resolve, reject) => {
      modem.dial(
        {
          path: `${options.path}?`,
          method: options.method,
          options: query,
          file: options.body,
          headers: options.headers ? { ...options.headers } : undefined,
          abortSignal: options.signal,
          isStream: true,
          statusCodes: options.statusCodes ?? { 200: true, 400: "bad parameter", 404: "not found", 500: "server error" },
        },
        (error, response) => (error ? reject(error) : resolve(response)),
      );
    });
  }

  /** Connection-level failures become DaemonUnavailableError; an abort becomes CancelledError. */
  translate(error: unknown, signal?: AbortSignal): unknown {
    if (KilnError.isInstance(error)) return error;
    if (signal?.aborted || (error as { name?: string })?.name === "AbortError") return new CancelledError("Cancelled", { cause: error });
    // The daemon answered (a 4xx/5xx): it is reachable, whatever the message says.
    if (typeof (error as { statusCode?: unknown })?.statusCode === "number") return error;
    const code = (error as NodeJS.ErrnoException | undefined)?.code;
    if (
      code &&
      [
        "ENOENT",
        "ECONNREFUSED",
        "EACCES",
        "ECONNRESET",
        "EHOSTUNREACH",
        "ENOTFOUND",
        "ETIMEDOUT",
        "EPIPE",
        "ERR_TLS_CERT_ALTNAME_INVALID",
        "DEPTH_ZERO_SELF_SIGNED_CERT",
        "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
        "SELF_SIGNED_CERT_IN_CHAIN",
        "EPROTO",
      ].includes(code)
    ) {
      return daemonUnavailable(this.connection, code, error);
    }
    if (/socket hang up|connect|certificate|ssl|tls/i.test(String((error as Error)?.message))) {
      return daemonUnavailable(this.connection, code ?? "connect", error);
    }
    return error;
  }
}

function daemonUnavailable(connection: DockerConnection, code: string, cause: unknown): DaemonUnavailableError {
  const reason =
    code === "ENOENT"
      ? "the socket does not exist (is Docker installed and running?)"
      : code === "EACCES"
        ? "permission denied on the socket"
        : code === "ECONNREFUSED"
          ? "connection refused (the daemon is not running)"
          : `${code}: ${(cause as Error)?.message ?? ""}`;
  const hint =
    code === "EACCES"
      ? "Add your user to the `docker` group (`sudo usermod -aG docker $USER`, then log in again) or run with access to the socket."
      : connection.kind === "unix"
        ? "Start the Docker daemon (`sudo systemctl start docker`, or run `dockerd`), install Docker if it is missing (https://docs.docker.com/engine/install/), or point DOCKER_HOST at a running engine."
        : connection.kind === "tls"
          ? "Check that the remote engine is running and that DOCKER_CERT_PATH holds the CA, client cert and key it trusts (and DOCKER_TLS_VERIFY matches the daemon's --tlsverify)."
          : "Check that the engine at DOCKER_HOST is running and reachable, or unset DOCKER_HOST to use the local socket.";
  return new DaemonUnavailableError(`Cannot reach the Docker daemon at ${connection.endpoint}: ${reason}`, {
    hint,
    cause,
    details: { endpoint: connection.endpoint, code },
  });
}

/**
 * docker-modem's constructor also reads the process's DOCKER_HOST / DOCKER_CERT_PATH (its own
 * defaults, under Kiln's explicit options) and can throw on them, e.g. a missing cert file.
 */
function clientSetupFailed(cause: unknown): ConfigError {
  const message = (cause as Error)?.message ?? String(cause);
  const field = /DOCKER_HOST/.test(message) ? "DOCKER_HOST" : "DOCKER_CERT_PATH";
  return new ConfigError(`Cannot set up the Docker client from the process environment: ${message}`, {
    hint: "Fix or unset DOCKER_HOST and DOCKER_CERT_PATH in the environment (DOCKER_CERT_PATH must hold ca.pem, cert.pem and key.pem).",
    cause,
    details: { field, value: process.env[field] ?? "" },
  });
}

/** Compares "1.41" with "1.39" numerically. */
export function compareApi(a: string, b: string): number {
  const [a1 = 0, a2 = 0] = a.split(".").map(Number);
  const [b1 = 0, b2 = 0] = b.split(".").map(Number);
  return a1 - b1 || a2 - b2;
}
