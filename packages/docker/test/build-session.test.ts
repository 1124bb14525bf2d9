// openBuildSession against a stand-in daemon on a unix socket: the upgrade request it makes (headers
// as buildkit's session.go names them), the daemon acting as the gRPC client over the hijacked
// connection, and the typed errors for a refused upgrade, no daemon, ssh://, and bad secrets.
import * as http from "node:http";
import * as http2 from "node:http2";
import { mkdtemp, rm } from "node:fs/promises";
import * as net from "node:net";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CancelledError, DaemonUnavailableError, type KilnError, ValidationError } from "@kiln/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MAX_BUILD_SECRET_BYTES, openBuildSession } from "../src/session/buildSession.js";
import type { DockerConnection } from "../src/daemon/connection.js";
import { decodeGrpcFrames, encodeGrpcFrame } from "../src/session/grpcServer.js";
import { decodeGetSecretResponse, encodeGetSecretRequest, GET_SECRET_METHOD, HEALTH_CHECK_METHOD } from "../src/session/sessionMessages.js";

let dir: string;
let server: http.Server | undefined;
const peers: http2.ClientHttp2Session[] = [];
/** Upgraded sockets leave the HTTP server's tracking: destroyed here so it can close. */
const upgraded: Socket[] = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "kiln-session-"));
});
afterEach(async () => {
  for (const peer of peers.splice(0)) peer.destroy();
  for (const socket of upgraded.splice(0)) socket.destroy();
  if (server) {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server!.close(() => resolve()));
  }
  server = undefined;
  await rm(dir, { recursive: true, force: true });
});

const unixConnection = (socketPath: string): DockerConnection => ({ options: { socketPath }, endpoint: `unix://${socketPath}`, kind: "unix" });

interface FakeDaemon {
  connection: DockerConnection;
  /** The headers of each `POST /session`. */
  requests: http.IncomingHttpHeaders[];
  /** The daemon's gRPC client on the last accepted session. */
  client: Promise<http2.ClientHttp2Session>;
}

/** Accepts `POST /session` with 101 and then, like dockerd, speaks HTTP/2 as the client on the connection. */
async function fakeDaemon(): Promise<FakeDaemon> {
  const requests: http.IncomingHttpHeaders[] = [];
  let accepted!: (client: http2.ClientHttp2Session) => void;
  const client = new Promise<http2.ClientHttp2Session>((resolve) => (accepted = resolve));
  server = http.createServer((_req, res) => res.writeHead(404).end());
  server.on("upgrade", (req: http.IncomingMessage, socket: Socket) => {
    requests.push(req.headers);
    upgraded.push(socket);
    socket.write("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n");
    const peer = http2.connect("http://localhost", { createConnection: () => socket });
    peer.on("error", () => undefined);
    peers.push(peer);
    accepted(peer);
  });
  const socketPath = join(dir, "docker.sock");
  await new Promise<void>((resolve) => server!.listen(socketPath, resolve));
  return { connection: unixConnection(socketPath), requests, client };
}

function getSecret(client: http2.ClientHttp2Session, id: string): Promise<{ status: number; message: string; data: Buffer | undefined }> {
  return new Promise((resolve, reject) => {
    const stream = client.request({ ":method": "POST", ":path": GET_SECRET_METHOD, "content-type": "application/grpc", te: "trailers" });
    let status = NaN;
    let message = "";
    const chunks: Buffer[] = [];
    const take = (h: http2.IncomingHttpHeaders) => {
      if (h["grpc-status"] !== undefined) status = Number(h["grpc-status"]);
      if (h["grpc-message"] !== undefined) message = decodeURIComponent(String(h["grpc-message"]));
    };
    stream.on("response", take);
    stream.on("trailers", take);
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => {
      const [frame] = decodeGrpcFrames(Buffer.concat(chunks));
      resolve({ status, message, data: frame && decodeGetSecretResponse(frame) });
    });
    stream.on("error", reject);
    stream.end(encodeGrpcFrame(encodeGetSecretRequest({ id })));
  });
}

describe("openBuildSession", () => {
  it("asks for an h2c upgrade of POST /session with the session headers, then serves the daemon's calls", async () => {
    const daemon = await fakeDaemon();
    const session = await openBuildSession(daemon.connection, {
      secrets: new Map([
        ["tok", "v-1"],
        ["other", "v-2"],
      ]),
      name: "ctx",
    });
    expect(session.id).toMatch(/^[0-9a-f]{64}$/);
    const [headers] = daemon.requests;
    expect(headers).toMatchObject({
      connection: "Upgrade",
      upgrade: "h2c",
      "x-docker-expose-session-uuid": session.id,
      "x-docker-expose-session-name": "ctx",
      "x-docker-expose-session-sharedkey": session.id,
    });
    // One header line per method: Node joins repeated request headers with ", ".
    expect(String(headers!["x-docker-expose-session-grpc-method"]).split(", ")).toEqual([HEALTH_CHECK_METHOD, GET_SECRET_METHOD]);

    const client = await daemon.client;
    expect(await getSecret(client, "tok")).toEqual({ status: 0, message: "", data: Buffer.from("v-1") });
    expect(await getSecret(client, "tok")).toMatchObject({ status: 0 });
    expect(await getSecret(client, "nope")).toEqual({ status: 5, message: "secret nope not found", data: undefined });
    expect(session.served()).toEqual(new Map([["tok", 2]]));
    expect(session.missing()).toEqual(new Set(["nope"]));

    const peerClosed = new Promise<void>((resolve) => client.once("close", () => resolve()));
    await session.close();
    await peerClosed;
  });

  it("a daemon that refuses the upgrade is a DaemonUnavailableError with its reason, status and a hint", async () => {
    server = http.createServer((_req, res) =>
      res.writeHead(400, { "Content-Type": "application/json" }).end(JSON.stringify({ message: "session abc already exists" })),
    );
    server.on("upgrade", (req: http.IncomingMessage, socket: Socket) => {
      // Like a daemon without the route: an ordinary error response instead of 101.
      socket.end(
        `HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 40\r\nConnection: close\r\n\r\n${JSON.stringify({ message: "session abc already exists" }).padEnd(40)}`,
      );
      void req;
    });
    const socketPath = join(dir, "refusing.sock");
    await new Promise<void>((resolve) => server!.listen(socketPath, resolve));
    const error = await openBuildSession(unixConnection(socketPath), { secrets: new Map([["tok", "hidden-value-1"]]) }).catch((e: unknown) => e);
    expect(DaemonUnavailableError.isInstance(error)).toBe(true);
    const kiln = error as KilnError;
    expect(kiln.message).toContain("refused a build session (HTTP 400): session abc already exists");
    expect(kiln.hint).toMatch(/API 1\.39/);
    expect(kiln.details).toMatchObject({ status: 400, endpoint: `unix://${socketPath}` });
    expect(JSON.stringify(kiln.toJSON())).not.toContain("hidden-value-1");
  });

  it("no daemon at the socket is a DaemonUnavailableError", async () => {
    const error = await openBuildSession(unixConnection(join(dir, "absent.sock")), { secrets: new Map() }).catch((e: unknown) => e);
    expect(DaemonUnavailableError.isInstance(error)).toBe(true);
    expect((error as KilnError).message).toMatch(/socket does not exist/);
    expect((error as KilnError).hint).toBeTruthy();
  });

  it("a daemon that never answers times out with a DaemonUnavailableError; an abort while waiting is a CancelledError", async () => {
    server = http.createServer(() => undefined);
    server.on("upgrade", (_req: http.IncomingMessage, socket: Socket) => upgraded.push(socket)); // holds the request forever
    const socketPath = join(dir, "silent.sock");
    await new Promise<void>((resolve) => server!.listen(socketPath, resolve));
    const timedOut = await openBuildSession(unixConnection(socketPath), { secrets: new Map(), timeoutMs: 200 }).catch((e: unknown) => e);
    expect(DaemonUnavailableError.isInstance(timedOut)).toBe(true);
    expect((timedOut as KilnError).message).toMatch(/did not accept a build session within 200 ms/);

    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const cancelled = await openBuildSession(unixConnection(socketPath), { secrets: new Map(), signal: controller.signal }).catch((e: unknown) => e);
    expect(CancelledError.isInstance(cancelled)).toBe(true);
  });

  it("ssh:// is reached through `docker system dial-stdio`; an ssh host that does not answer is DaemonUnavailableError naming the endpoint", async () => {
    const port = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, "127.0.0.1", () => {
        const { port } = probe.address() as net.AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    const ssh: DockerConnection = {
      options: { protocol: "ssh", host: "127.0.0.1", port: String(port), username: "ci" } as never,
      endpoint: `ssh://ci@127.0.0.1:${port}`,
      kind: "ssh",
    };
    const error = await openBuildSession(ssh, { secrets: new Map([["tok", "x"]]) }).catch((e: unknown) => e);
    expect(DaemonUnavailableError.isInstance(error), String(error)).toBe(true);
    expect((error as KilnError).message).toContain(`ssh://ci@127.0.0.1:${port}`);
  });

  it("refuses an empty ID and an oversized value before any request, without showing the value", async () => {
    const daemon = await fakeDaemon();
    const empty = await openBuildSession(daemon.connection, { secrets: new Map([["", "x"]]) }).catch((e: unknown) => e);
    expect(ValidationError.isInstance(empty)).toBe(true);
    const big = "S".repeat(MAX_BUILD_SECRET_BYTES) + "-tail-marker";
    const tooBig = await openBuildSession(daemon.connection, { secrets: new Map([["big", big]]) }).catch((e: unknown) => e);
    expect(ValidationError.isInstance(tooBig)).toBe(true);
    expect((tooBig as ValidationError).message).toContain('"big"');
    expect(JSON.stringify((tooBig as KilnError).toJSON())).not.toContain("SSSS");
    const notString = await openBuildSession(daemon.connection, { secrets: new Map([["n", 42 as unknown as string]]) }).catch((e: unknown) => e);
    expect(ValidationError.isInstance(notString)).toBe(true);
    expect((notString as Error).message).not.toContain("42");
    expect(daemon.requests).toHaveLength(0);
  });

  it("ends when the daemon drops the connection (closed resolves)", async () => {
    const daemon = await fakeDaemon();
    const session = await openBuildSession(daemon.connection, { secrets: new Map() });
    (await daemon.client).destroy();
    for (const socket of upgraded) socket.destroy();
    await session.closed;
    await session.close();
  });
});
