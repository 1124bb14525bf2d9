/**
 * A minimal gRPC server for unary methods, spoken over one already-open connection (HTTP/2
 * cleartext). The Docker daemon's build session hijacks a client's HTTP connection and then acts as
 * the gRPC *client* on it, so Kiln must be the server there; only a handful of unary calls are ever
 * made, which does not justify a gRPC library.
 *
 * Wire format (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md): each message is a
 * 1-byte compressed flag, a 4-byte big-endian length and the protobuf bytes; the answer is
 * `:status 200`, `content-type: application/grpc`, the message, then trailers with `grpc-status`
 * (and `grpc-message`, percent-encoded) — or, for an error, one trailers-only HEADERS frame.
 */
import * as http2 from "node:http2";
import type { Duplex } from "node:stream";

export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 5,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
} as const;

/** Thrown by a handler to answer with a gRPC status other than OK. The message goes to the caller: never put a secret in it. */
export class GrpcStatusError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "GrpcStatusError";
  }
}

/** Decodes one request message and returns the encoded response message. */
export type UnaryHandler = (request: Buffer) => Buffer | Promise<Buffer>;

const PREFIX_BYTES = 5;
/** A request bigger than this is refused (the calls served here carry an ID and a few annotations). */
const DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024;

/** Frames one protobuf message for the wire (uncompressed). */
export function encodeGrpcFrame(message: Buffer): Buffer {
  const prefix = Buffer.alloc(PREFIX_BYTES);
  prefix.writeUInt8(0, 0);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

/** Splits a request body into its messages. Throws GrpcStatusError on a compressed or truncated frame. */
export function decodeGrpcFrames(body: Buffer): Buffer[] {
  const messages: Buffer[] = [];
  let offset = 0;
  while (offset < body.length) {
    if (offset + PREFIX_BYTES > body.length) throw new GrpcStatusError(GrpcStatus.INTERNAL, "truncated gRPC message prefix");
    const compressed = body.readUInt8(offset);
    const length = body.readUInt32BE(offset + 1);
    // No grpc-accept-encoding is advertised, so a conforming client never compresses.
    if (compressed !== 0) throw new GrpcStatusError(GrpcStatus.UNIMPLEMENTED, "compressed gRPC messages are not supported");
    const start = offset + PREFIX_BYTES;
    if (start + length > body.length) throw new GrpcStatusError(GrpcStatus.INTERNAL, "truncated gRPC message");
    messages.push(body.subarray(start, start + length));
    offset = start + length;
  }
  return messages;
}

/** `grpc-message` is percent-encoded: everything outside printable ASCII, and `%` itself. */
export function encodeGrpcMessageHeader(text: string): string {
  let out = "";
  for (const byte of Buffer.from(text, "utf8")) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

export interface GrpcConnectionOptions {
  maxRequestBytes?: number;
  /**
   * How the HTTP/2 server side is started on the socket: `http2.performServerHandshake` (Node ≥ 20.12),
   * else a listener-less `http2.createServer()` handed the socket as a connection (Node 20.11).
   */
  handshake?: "perform" | "server";
}

export interface GrpcConnection {
  /** Resolves once the connection is closed (by `close()`, the peer, or an error). */
  readonly closed: Promise<void>;
  /** Sends GOAWAY, lets calls in flight finish for up to `graceMs`, then destroys the socket. */
  close(graceMs?: number): Promise<void>;
}

/** Serves `handlers` (keyed by `/package.Service/Method`) as the HTTP/2 server end of `socket`. */
export function serveGrpc(socket: Duplex, handlers: ReadonlyMap<string, UnaryHandler>, options: GrpcConnectionOptions = {}): GrpcConnection {
  const maxRequestBytes = options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
  const session = startServerSession(socket, options.handshake);
  // Closed means the socket is: the session ending (GOAWAY, error, peer gone) takes the socket with it.
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  session.once("close", () => socket.destroy());
  // Errors end the connection (seen through `closed`); there is no one to report them to, and the
  // daemon fails the build that needed the session with its own message.
  session.on("error", () => undefined);
  socket.on("error", () => undefined);
  session.on("stream", (stream, headers) => handleStream(stream, headers, handlers, maxRequestBytes));

  let closing: Promise<void> | undefined;
  return {
    closed,
    close(graceMs = 1000) {
      closing ??= (async () => {
        if (!session.closed && !session.destroyed) session.close();
        const timer = setTimeout(() => session.destroy(), graceMs);
        try {
          await closed;
        } finally {
          clearTimeout(timer);
        }
      })();
      return closing;
    },
  };
}

function startServerSession(socket: Duplex, mode: GrpcConnectionOptions["handshake"]): http2.ServerHttp2Session {
  const perform = (http2 as { performServerHandshake?: (socket: Duplex) => http2.ServerHttp2Session }).performServerHandshake;
  if (mode !== "server" && typeof perform === "function") return perform(socket);
  // The server never listens: it only runs the HTTP/2 server protocol on the socket it is given.
  const server = http2.createServer();
  let started: http2.ServerHttp2Session | undefined;
  server.once("session", (session) => (started = session));
  server.emit("connection", socket);
  if (!started) throw new Error("HTTP/2 server session did not start on the hijacked connection");
  return started;
}

function handleStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, handlers: ReadonlyMap<string, UnaryHandler>, maxRequestBytes: number): void {
  stream.on("error", () => undefined); // a caller that resets its call (timeout, cancel) is not our error
  const path = String(headers[":path"] ?? "");
  const handler = headers[":method"] === "POST" ? handlers.get(path) : undefined;
  if (!handler) {
    stream.resume();
    respondWithStatus(stream, GrpcStatus.UNIMPLEMENTED, `unknown method ${path}`);
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let refused = false;
  stream.on("data", (chunk: Buffer) => {
    if (refused) return;
    size += chunk.length;
    if (size > maxRequestBytes) {
      refused = true;
      respondWithStatus(stream, GrpcStatus.RESOURCE_EXHAUSTED, "request too large");
      return;
    }
    chunks.push(chunk);
  });
  stream.on("end", () => {
    if (refused) return;
    void answer(stream, handler, Buffer.concat(chunks));
  });
}

async function answer(stream: http2.ServerHttp2Stream, handler: UnaryHandler, body: Buffer): Promise<void> {
  let response: Buffer;
  try {
    const messages = decodeGrpcFrames(body);
    if (messages.length !== 1) throw new GrpcStatusError(GrpcStatus.INTERNAL, `expected one request message, got ${messages.length}`);
    response = await handler(messages[0]!);
  } catch (error) {
    // Only a GrpcStatusError's own message is sent; anything else is reported without detail.
    if (error instanceof GrpcStatusError) respondWithStatus(stream, error.status, error.message);
    else respondWithStatus(stream, GrpcStatus.INTERNAL, "internal error");
    return;
  }
  if (stream.destroyed || stream.closed) return;
  stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
  stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": String(GrpcStatus.OK) }));
  stream.end(encodeGrpcFrame(response));
}

/** A trailers-only response: status and message in the one HEADERS frame that ends the stream. */
function respondWithStatus(stream: http2.ServerHttp2Stream, status: number, message: string): void {
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  stream.respond(
    { ":status": 200, "content-type": "application/grpc", "grpc-status": String(status), "grpc-message": encodeGrpcMessageHeader(message) },
    { endStream: true },
  );
}
