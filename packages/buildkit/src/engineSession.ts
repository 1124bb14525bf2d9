/**
 * A session with the Docker Engine's embedded BuildKit on the Engine's own `POST /session` (HTTP
 * upgrade to h2c), as `docker build` with BuildKit opens it — rather than `Control.Session` inside
 * the `/grpc` connection. Both reach the same session manager (moby registers /session and the
 * /grpc Control service on one), so a Solve over /grpc finds the session by its id; but here the
 * daemon speaks HTTP/2 straight on the socket instead of inside gRPC messages of an HTTP/2 stream
 * handled by the engine's HTTP/2-over-HTTP/1 bridge — one framing layer less on each side for every
 * byte of the build context (measured: bench/RESULTS.md, BuildKit builder).
 */
import { resolveDockerConnection } from "@kiln/docker";
import { serveGrpc, type GrpcConnection } from "@kiln/docker/internal";
import type { BuildKitEndpoint } from "./endpoints.js";
import type { BuildKitSession, SessionOptions } from "./session.js";
import { DEFAULT_DIAL_TIMEOUT_MS, upgradeEngine } from "./transport.js";

export interface EngineSessionOptions extends SessionOptions {
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

export async function openEngineSession(endpoint: BuildKitEndpoint, options: EngineSessionOptions): Promise<BuildKitSession> {
  const connection = resolveDockerConnection(options.env ?? process.env);
  const socket = await upgradeEngine(
    connection,
    endpoint,
    {
      path: "/session",
      // One header line per served method: the daemon routes only calls it was told about.
      headers: {
        "X-Docker-Expose-Session-Uuid": options.id,
        "X-Docker-Expose-Session-Name": options.name,
        "X-Docker-Expose-Session-Sharedkey": options.sharedKey,
        "X-Docker-Expose-Session-Grpc-Method": [...options.unary.keys(), ...options.streams.keys()],
      },
    },
    options.signal,
    options.timeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS,
  );
  let grpc: GrpcConnection;
  try {
    grpc = serveGrpc(socket, options.unary, { streams: options.streams, maxRequestBytes: 4 * 1024 * 1024 });
  } catch (error) {
    socket.destroy();
    throw error;
  }
  const onAbort = () => void grpc.close(500);
  options.signal?.addEventListener("abort", onAbort, { once: true });
  void grpc.closed.then(() => options.signal?.removeEventListener("abort", onAbort));
  return { id: options.id, closed: grpc.closed, close: () => grpc.close(500) };
}
