/**
 * `POST <path>` with `Upgrade: h2c` on a connection of its own to the Docker Engine (unix, tcp, tls,
 * ssh): after the engine's 101 the connection is handed over, as one Duplex that starts with the bytes
 * read past the answer. The Engine's `/session` (build sessions: @kiln/docker's secrets and context,
 * @kiln/buildkit's sessions) and `/grpc` (@kiln/buildkit's Control API) are both opened this way;
 * each caller words its own errors (`failures`).
 */
import * as http from "node:http";
import * as https from "node:https";
import type { Socket } from "node:net";
import type { DockerConnection } from "../daemon/connection.js";
import { HijackedStream } from "./hijackedStream.js";
import { dialStdio, type SshEngineOptions } from "./sshDialStdio.js";

export interface UpgradeTarget {
  path: string;
  /** Extra request headers (an array sends one header line per value). */
  headers?: Record<string, string | string[]>;
  signal?: AbortSignal;
  /** How long the engine may take to answer. */
  timeoutMs: number;
}

export interface UpgradeFailures {
  /** The engine answered without upgrading: its status and reason (its `message`, or the body's text). */
  refused(status: number, reason: string): unknown;
  /** No answer within `timeoutMs`. */
  timedOut(): unknown;
  /** The request failed (no engine there, connection lost…). */
  failed(error: unknown): unknown;
  /** `signal` was aborted. */
  cancelled(error: unknown): unknown;
}

export function upgradeToH2c(connection: DockerConnection, target: UpgradeTarget, failures: UpgradeFailures): Promise<HijackedStream> {
  const { signal, timeoutMs } = target;
  return new Promise<HijackedStream>((resolve, reject) => {
    let settled = false;
    const fail = (error: unknown) => {
      if (settled) return;
      settled = true;
      request.destroy();
      reject(error);
    };
    const request = sessionRequest(connection, {
      method: "POST",
      path: target.path,
      headers: { ...target.headers, Connection: "Upgrade", Upgrade: "h2c", "Content-Length": "0" },
      signal,
      timeout: timeoutMs,
    });
    request.on("upgrade", (response, socket: Socket, head: Buffer) => {
      if (settled) return socket.destroy();
      if (String(response.headers.upgrade ?? "").toLowerCase() !== "h2c") {
        socket.destroy();
        return fail(failures.refused(response.statusCode ?? 0, `upgraded to ${JSON.stringify(response.headers.upgrade ?? "")} instead of h2c`));
      }
      settled = true;
      // The request's timeout was set on this socket; what runs on it lives as long as the build.
      socket.setTimeout(0);
      if (typeof socket.setKeepAlive === "function") socket.setKeepAlive(true, 30_000);
      resolve(new HijackedStream(socket, head));
    });
    request.on("response", (response) => {
      // Any answer but 101: the engine is there but will not upgrade.
      const chunks: Buffer[] = [];
      let size = 0;
      response.on("data", (chunk: Buffer) => {
        if (size < 4096) chunks.push(chunk);
        size += chunk.length;
      });
      response.on("end", () => fail(failures.refused(response.statusCode ?? 0, engineMessage(Buffer.concat(chunks)))));
      response.on("error", (error) => fail(failures.failed(error)));
    });
    request.on("timeout", () => fail(failures.timedOut()));
    request.on("error", (error) => fail(signal?.aborted ? failures.cancelled(error) : failures.failed(error)));
    request.end();
  });
}

/** The engine's `{"message": …}` error body, or its text. */
function engineMessage(body: Buffer): string {
  const text = body.toString("utf8").trim();
  try {
    const message = (JSON.parse(text) as { message?: unknown }).message;
    if (typeof message === "string") return message;
  } catch {
    // not JSON
  }
  return text.slice(0, 300) || "no reason given";
}

/**
 * A request on a connection of its own to the engine at `connection` (unix, tcp, tls, and ssh through
 * `docker system dial-stdio` as the docker CLI reaches it), for an HTTP upgrade.
 */
export function sessionRequest(connection: DockerConnection, base: http.RequestOptions): http.ClientRequest {
  const o = connection.options as Record<string, unknown>;
  if (connection.kind === "ssh") {
    const ssh = o as unknown as SshEngineOptions;
    return http.request({
      ...base,
      host: "docker",
      createConnection: (_options, callback) => void dialStdio(ssh, (error, stream) => callback(error, stream!)),
    } as http.RequestOptions);
  }
  // `agent: false`: a connection of its own, never returned to (or taken from) a pool.
  if (connection.kind === "unix" || connection.kind === "npipe") return http.request({ ...base, socketPath: String(o.socketPath), agent: false });
  const target = { ...base, host: String(o.host), port: Number(o.port), agent: false };
  if (connection.kind === "tcp") return http.request(target);
  return https.request({
    ...target,
    ca: o.ca as https.RequestOptions["ca"],
    cert: o.cert as https.RequestOptions["cert"],
    key: o.key as https.RequestOptions["key"],
    ...(typeof o.checkServerIdentity === "function" ? { checkServerIdentity: o.checkServerIdentity as https.RequestOptions["checkServerIdentity"] } : {}),
  });
}
