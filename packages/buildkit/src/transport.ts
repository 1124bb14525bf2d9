/**
 * Opens the HTTP/2 connection that carries `moby.buildkit.v1.Control` to one endpoint:
 * - docker-engine: `POST /grpc` with `Upgrade: h2c` on the Engine API connection DOCKER_HOST names
 *   (unix, tcp, tls, ssh through `docker system dial-stdio` — as @kiln/docker reaches the engine);
 *   after the 101 the client speaks HTTP/2 on it;
 * - unix://: HTTP/2 cleartext on the socket;
 * - tcp://: HTTP/2 cleartext, or over TLS (ALPN h2) with the CA / client certificate / server name.
 */
import * as http2 from "node:http2";
import * as net from "node:net";
import type { Duplex } from "node:stream";
import * as tls from "node:tls";
import { CancelledError, ConfigError, DaemonUnavailableError } from "@kiln/core";
import { resolveDockerConnection, type DockerConnection } from "@kiln/docker";
import { upgradeToH2c } from "@kiln/docker/internal";
import type { BuildKitEndpoint } from "./endpoints.js";
import { GrpcChannel } from "./grpcClient.js";

export interface DialOptions {
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  /** How long connecting may take (default 10 s). */
  timeoutMs?: number;
}

export const DEFAULT_DIAL_TIMEOUT_MS = 10_000;

/** Connects; rejects with DaemonUnavailableError (unreachable), ConfigError or CancelledError. */
export async function dialEndpoint(endpoint: BuildKitEndpoint, options: DialOptions = {}): Promise<GrpcChannel> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS;
  options.signal?.throwIfAborted();
  let session: http2.ClientHttp2Session;
  if (endpoint.kind === "docker-engine") {
    const connection = resolveDockerConnection(options.env ?? process.env);
    const stream = await upgradeEngine(connection, endpoint, { path: "/grpc" }, options.signal, timeoutMs);
    session = http2.connect("http://docker-engine", { createConnection: () => stream });
  } else if (endpoint.kind === "unix") {
    session = http2.connect("http://buildkitd", { createConnection: () => net.connect(endpoint.socketPath!) });
  } else if (endpoint.tls) {
    const t = endpoint.tls;
    session = http2.connect(`https://${endpoint.hostname}:${endpoint.port}`, {
      createConnection: () =>
        tls.connect({
          host: endpoint.hostname,
          port: endpoint.port,
          ALPNProtocols: ["h2"],
          servername: t.serverName ?? (net.isIP(endpoint.hostname!) ? undefined : endpoint.hostname),
          ...(t.ca ? { ca: t.ca } : {}),
          ...(t.cert ? { cert: t.cert } : {}),
          ...(t.key ? { key: t.key } : {}),
          // An IP address with a server name: check the certificate against the name given.
          ...(t.serverName ? { checkServerIdentity: (_host: string, cert: tls.PeerCertificate) => tls.checkServerIdentity(t.serverName!, cert) } : {}),
        }),
    });
  } else {
    session = http2.connect(`http://${endpoint.hostname}:${endpoint.port}`);
  }
  await connected(session, endpoint, options.signal, timeoutMs);
  return new GrpcChannel(session);
}

function connected(session: http2.ClientHttp2Session, endpoint: BuildKitEndpoint, signal: AbortSignal | undefined, timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const cleanup = () => {
      clearTimeout(timer);
      session.off("connect", onConnect);
      session.off("error", onError);
      signal?.removeEventListener("abort", onAbort);
    };
    const onConnect = () => {
      cleanup();
      // Errors after connecting end the calls in flight, which report them.
      session.on("error", () => undefined);
      resolve();
    };
    const onError = (error: Error) => {
      cleanup();
      session.destroy();
      reject(unreachable(endpoint, error));
    };
    const onAbort = () => {
      cleanup();
      session.destroy();
      reject(new CancelledError(`Connecting to BuildKit at ${endpoint.address} was cancelled`));
    };
    const timer = setTimeout(() => onError(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: "ETIMEDOUT" })), timeoutMs);
    session.once("connect", onConnect);
    session.once("error", onError);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

export function unreachable(endpoint: BuildKitEndpoint, error: unknown): DaemonUnavailableError {
  const code = (error as NodeJS.ErrnoException)?.code;
  return new DaemonUnavailableError(`Cannot reach BuildKit at ${endpoint.address}: ${(error as Error)?.message ?? String(error)}`, {
    hint:
      endpoint.kind === "docker-engine"
        ? "Start the Docker daemon, or point DOCKER_HOST at a running engine (Docker 18.09+ on Linux has BuildKit), or set KILN_BUILDKIT_HOST to a buildkitd."
        : endpoint.tls
          ? "Check that buildkitd listens there with TLS and trusts this client certificate (KILN_BUILDKIT_TLS_CA/_CERT/_KEY/_SERVER_NAME)."
          : "Check that buildkitd is running and listening at that address (`buildkitd --addr …`), or change KILN_BUILDKIT_HOST.",
    cause: error,
    details: { endpoint: endpoint.address, ...(code ? { code } : {}) },
  });
}

/**
 * `POST /grpc` (or `/session`), `Upgrade: h2c` → 101: the engine's own BuildKit (or a session with it)
 * on a connection of its own to the Engine API.
 */
export function upgradeEngine(
  connection: DockerConnection,
  endpoint: BuildKitEndpoint,
  target: { path: "/grpc" | "/session"; headers?: Record<string, string | string[]> },
  signal: AbortSignal | undefined,
  timeoutMs: number,
): Promise<Duplex> {
  if (connection.kind === "npipe") {
    throw new ConfigError(`The Docker Engine at ${connection.endpoint} cannot be reached for BuildKit from Kiln (npipe is not supported for /grpc)`, {
      hint: "Reach the engine over tcp:// (DOCKER_HOST), or run buildkitd and set KILN_BUILDKIT_HOST.",
      details: { field: "DOCKER_HOST", value: connection.endpoint },
    });
  }
  const where: BuildKitEndpoint = { ...endpoint, address: `${endpoint.address} (${connection.endpoint})` };
  return upgradeToH2c(
    connection,
    { path: target.path, headers: target.headers, signal, timeoutMs },
    {
      refused: (status, reason) =>
        new DaemonUnavailableError(`The Docker Engine at ${connection.endpoint} refused BuildKit's ${target.path} (HTTP ${status}): ${reason}`, {
          hint: "The engine needs BuildKit support (Docker 18.09+ on Linux, API 1.39+); a proxy in front of it must pass `Upgrade: h2c`. Or set KILN_BUILDKIT_HOST to a buildkitd.",
          details: { endpoint: where.address, status },
        }),
      timedOut: () => unreachable(where, Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: "ETIMEDOUT" })),
      cancelled: (error) => new CancelledError(`Connecting to BuildKit at ${endpoint.address} was cancelled`, { cause: error }),
      failed: (error) => unreachable(where, error),
    },
  );
}
