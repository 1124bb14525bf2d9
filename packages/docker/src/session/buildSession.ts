/**
 * A BuildKit session with the Docker Engine that serves build secrets, as `docker build --secret`
 * does, and — for a build sent with `remote=client-session` — its context and Dockerfile as filesync
 * local sources (session/contextSources.ts), as `docker build` with BuildKit does: `POST /session` upgraded to h2c (the daemon answers 101 and hijacks the connection), after
 * which the *daemon* is the gRPC client and Kiln the gRPC server on that connection. A build that
 * passes `session=<id>` in its `POST /build?version=2` query can then read each
 * `RUN --mount=type=secret,id=…` value from here; nothing of it reaches the build context, the
 * image or the build's output.
 *
 * Sources: moby client/hijack.go + client/session.go (DialSession), moby api/server/router/session,
 * buildkit session/session.go (headers), session/manager.go (HandleHTTPRequest: 101, `Upgrade: h2c`),
 * session/grpc.go (the daemon's gRPC client and its Health/Check probe), session/secrets (GetSecret,
 * NOT_FOUND for an unknown ID, 500 KiB limit).
 */
import { randomBytes } from "node:crypto";
import { CancelledError, DaemonUnavailableError, KilnError, ValidationError } from "@kiln/core";
import type { DockerConnection } from "../daemon/connection.js";
import { DockerDaemon } from "../daemon/daemon.js";
import type { HijackedStream } from "./hijackedStream.js";
import { GrpcStatus, GrpcStatusError, serveGrpc, type GrpcConnection, type StreamingHandler, type UnaryHandler } from "./grpcServer.js";
import { diffCopyHandler, DIFF_COPY_METHOD, type SourceTree, type TransferProgress } from "./filesync.js";
import { upgradeToH2c } from "./engineUpgrade.js";
import {
  decodeGetSecretRequest,
  encodeGetSecretResponse,
  encodeHealthCheckResponse,
  GET_SECRET_METHOD,
  HEALTH_CHECK_METHOD,
  ServingStatus,
} from "./sessionMessages.js";

/** BuildKit refuses a larger secret (secretsprovider.MaxSecretSize). */
export const MAX_BUILD_SECRET_BYTES = 500 * 1024;

const HEADER_SESSION_ID = "X-Docker-Expose-Session-Uuid";
const HEADER_SESSION_NAME = "X-Docker-Expose-Session-Name";
const HEADER_SESSION_SHARED_KEY = "X-Docker-Expose-Session-Sharedkey";
const HEADER_SESSION_METHOD = "X-Docker-Expose-Session-Grpc-Method";

export interface BuildSessionOptions {
  /** Secret ID → value. Values are served only to the daemon, on request, and never logged. */
  secrets?: ReadonlyMap<string, string>;
  /** Local sources served with filesync DiffCopy (a `remote=client-session` build's `context` and `dockerfile`). */
  sources?: SessionSources;
  /** Aborting cancels the opening, or closes an open session. */
  signal?: AbortSignal;
  /** The session's name at the daemon (docker uses the context directory's name). */
  name?: string;
  /** How long the daemon may take to accept the session (default 30 s). */
  timeoutMs?: number;
}

export interface SessionSources {
  /** By local source name (the `dir-name` the daemon asks for). */
  trees: ReadonlyMap<string, SourceTree>;
  /** The session's shared key: the daemon keeps received sources under it and sends only changes next time. */
  sharedKey: string;
  onProgress?: (progress: TransferProgress) => void;
  /** Kiln's own error for a file that could not be sent as listed (the daemon only sees a message). */
  onFailure?: (error: unknown) => void;
}

export interface BuildSession {
  /** Pass as the `session` query parameter of `POST /build` (BuildKit, `version=2`). */
  readonly id: string;
  /** How many times the daemon read each secret. */
  served(): ReadonlyMap<string, number>;
  /** Secret IDs the daemon asked for that this session does not have (answered NOT_FOUND). */
  missing(): ReadonlySet<string>;
  /** Resolves when the session's connection has ended (closed here, or by the daemon). */
  readonly closed: Promise<void>;
  /** Ends the session and releases its connection. Safe to call more than once. */
  close(): Promise<void>;
}

/** Opens a session at the daemon `connection` points to; resolves once the daemon has accepted it. */
export async function openBuildSession(connection: DockerConnection, options: BuildSessionOptions): Promise<BuildSession> {
  const secrets = checkedSecrets(options.secrets ?? new Map());
  if (options.signal?.aborted) throw new CancelledError("Opening the build session was cancelled", { cause: options.signal.reason });
  const id = randomBytes(32).toString("hex");
  const { handlers, served, missing } = secretSessionHandlers(secrets);
  const streams = new Map<string, StreamingHandler>();
  const { sources } = options;
  if (sources) streams.set(DIFF_COPY_METHOD, diffCopyHandler(sources.trees, sources.onProgress, sources.onFailure));

  // One header line per served method: the daemon routes only calls it was told about.
  const sessionHeaders = {
    [HEADER_SESSION_ID]: id,
    [HEADER_SESSION_NAME]: options.name ?? "kiln",
    [HEADER_SESSION_SHARED_KEY]: sources?.sharedKey ?? id,
    [HEADER_SESSION_METHOD]: [...handlers.keys(), ...streams.keys()],
  };
  const socket = await upgrade(connection, sessionHeaders, options);
  let grpc: GrpcConnection;
  try {
    grpc = serveGrpc(socket, handlers, { streams });
  } catch (error) {
    socket.destroy();
    throw new DaemonUnavailableError(`Cannot start the build session with the Docker daemon at ${connection.endpoint}: ${(error as Error).message}`, {
      hint: "Check that the Docker Engine supports BuildKit sessions (API 1.39 or later).",
      cause: error,
      details: { endpoint: connection.endpoint },
    });
  }

  const onAbort = () => void grpc.close();
  options.signal?.addEventListener("abort", onAbort, { once: true });
  if (options.signal?.aborted) onAbort(); // aborted while the daemon was answering
  void grpc.closed.then(() => options.signal?.removeEventListener("abort", onAbort));
  return {
    id,
    served,
    missing,
    closed: grpc.closed,
    close: () => grpc.close(),
  };
}

export interface SecretSessionHandlers {
  /** Health/Check and Secrets/GetSecret, keyed by gRPC method path. */
  handlers: Map<string, UnaryHandler>;
  served(): ReadonlyMap<string, number>;
  missing(): ReadonlySet<string>;
}

/**
 * The unary methods every BuildKit session serves here: the daemon's health probe and its secret
 * reads (NOT_FOUND for an id the session lacks, recorded so a failure can name it). Shared by the
 * Engine's `/session` and @kiln/buildkit's Control.Session.
 */
export function secretSessionHandlers(secrets: ReadonlyMap<string, Buffer>): SecretSessionHandlers {
  const served = new Map<string, number>();
  const missing = new Set<string>();
  const handlers = new Map<string, UnaryHandler>([
    [HEALTH_CHECK_METHOD, () => encodeHealthCheckResponse(ServingStatus.SERVING)],
    [
      GET_SECRET_METHOD,
      (request) => {
        const { id: secretId } = decodeGetSecretRequest(request);
        const value = secrets.get(secretId);
        if (value === undefined) {
          missing.add(secretId);
          throw new GrpcStatusError(GrpcStatus.NOT_FOUND, `secret ${secretId} not found`);
        }
        served.set(secretId, (served.get(secretId) ?? 0) + 1);
        return encodeGetSecretResponse(value);
      },
    ],
  ]);
  return { handlers, served: () => new Map(served), missing: () => new Set(missing) };
}

/** Values as bytes; an empty ID or an oversized value is refused here rather than by the daemon mid-build. */
export function checkedSecrets(secrets: ReadonlyMap<string, string>): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const [id, value] of secrets) {
    if (typeof id !== "string" || id === "") {
      throw new ValidationError("secret id", id, "must be a non-empty string", { hint: "Name each build secret, e.g. `id=npm_token`." });
    }
    if (typeof value !== "string") {
      // Only the type is named: the value itself is never shown.
      throw new ValidationError("secret id", id, `has a ${typeof value} value; a secret's value must be a string`, {
        hint: "Resolve each secret to its string value before the build.",
      });
    }
    const bytes = Buffer.from(value, "utf8");
    if (bytes.length > MAX_BUILD_SECRET_BYTES) {
      throw new ValidationError("secret id", id, `its value is ${bytes.length} bytes; BuildKit accepts at most ${MAX_BUILD_SECRET_BYTES}`, {
        hint: "Pass a smaller secret (a token or key, not a file tree); put larger private data in a build stage that is not shipped.",
      });
    }
    out.set(id, bytes);
  }
  return out;
}

/** `POST /session` with `Upgrade: h2c`; resolves with the hijacked connection after the daemon's 101. */
function upgrade(connection: DockerConnection, sessionHeaders: Record<string, string | string[]>, options: BuildSessionOptions): Promise<HijackedStream> {
  const daemon = new DockerDaemon(connection);
  const timeoutMs = options.timeoutMs ?? 30_000;
  return upgradeToH2c(
    connection,
    { path: "/session", headers: sessionHeaders, signal: options.signal, timeoutMs },
    {
      refused: (status, reason) => refused(connection, status, reason),
      timedOut: () =>
        new DaemonUnavailableError(`The Docker daemon at ${connection.endpoint} did not accept a build session within ${timeoutMs} ms`, {
          hint: "Check that the daemon is responsive (`docker info`) and retry.",
          details: { endpoint: connection.endpoint, code: "ETIMEDOUT" },
        }),
      cancelled: (error) => new CancelledError("Opening the build session was cancelled", { cause: error }),
      failed: (error) => {
        const translated = daemon.translate(error, options.signal);
        return KilnError.isInstance(translated)
          ? translated
          : new DaemonUnavailableError(`Cannot open a build session with the Docker daemon at ${connection.endpoint}: ${(error as Error).message}`, {
              hint: "Check that the engine at DOCKER_HOST is running and reachable.",
              cause: error,
              details: { endpoint: connection.endpoint },
            });
      },
    },
  );
}

function refused(connection: DockerConnection, status: number, reason: string): DaemonUnavailableError {
  return new DaemonUnavailableError(`The Docker daemon at ${connection.endpoint} refused a build session (HTTP ${status}): ${reason}`, {
    hint: "Build secrets need BuildKit sessions: a Docker Engine with API 1.39 or later on Linux (Docker 18.09+), reached directly (a proxy in between must pass `Upgrade: h2c`).",
    details: { endpoint: connection.endpoint, status },
  });
}
