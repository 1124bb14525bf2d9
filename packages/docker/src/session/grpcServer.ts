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

/** One streaming call (client, server or bidirectional streaming) as the handler sees it. */
export interface StreamingCall {
  /** The request metadata (gRPC headers, lower-case names; repeated keys as arrays). */
  readonly headers: http2.IncomingHttpHeaders;
  /** Every value of a metadata key, in order (`headers` joins repeated keys with ", "). */
  values(key: string): string[];
  /** The caller's messages, as they arrive; ends when the caller half-closes. */
  readonly messages: AsyncIterable<Buffer>;
  /** Sends one response message (or one message given as parts, joined), resolving once the transport has taken it (backpressure). */
  send(message: Buffer | readonly Buffer[]): Promise<void>;
  /**
   * Sends one message already framed (gRPC prefix included, e.g. by frameInPlace) as it is, without a
   * copy. The buffer is the transport's from then on: never change it afterwards.
   */
  sendFramed?(frame: Buffer): Promise<void>;
  /** Aborted when the caller cancels the call or the connection goes away. */
  readonly signal: AbortSignal;
}

/** Serves a streaming method: resolve to end the call with OK, throw GrpcStatusError for another status. */
export type StreamingHandler = (call: StreamingCall) => Promise<void>;

const PREFIX_BYTES = 5;
/** A request bigger than this is refused (the calls served here carry an ID and a few annotations). */
const DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024;

/** Frames one protobuf message for the wire (uncompressed). */
export function encodeGrpcFrame(message: Buffer): Buffer {
  return Buffer.concat([grpcMessagePrefix(message.length), message]);
}

/** The 5-byte prefix of an uncompressed gRPC message of `length` bytes. */
export function grpcMessagePrefix(length: number): Buffer {
  const prefix = Buffer.alloc(PREFIX_BYTES);
  prefix.writeUInt32BE(length, 1);
  return prefix;
}

/** One message given as parts (a header and a large payload): the prefix and the non-empty parts, in order. */
export function grpcFrameParts(message: Buffer | readonly Buffer[]): Buffer[] {
  const parts = (Buffer.isBuffer(message) ? [message] : message).filter((p) => p.length > 0);
  return [grpcMessagePrefix(parts.reduce((n, p) => n + p.length, 0)), ...parts];
}

/** One message (or one message given as parts) framed into a single new buffer: what is written to a stream. */
export function encodeGrpcMessage(message: Buffer | readonly Buffer[]): Buffer {
  return Buffer.concat(grpcFrameParts(message));
}

/**
 * Frames in place the message at [start, end) of `buffer`: the 5-byte prefix is written into the
 * bytes just before `start` (which must be the caller's, free), and the frame shares the buffer's
 * memory — a large payload read into a buffer with room in front goes out as one buffer, uncopied.
 */
export function frameInPlace(buffer: Buffer, start: number, end: number): Buffer {
  if (start < PREFIX_BYTES || end < start || end > buffer.length)
    throw new RangeError(`no room to frame [${start}, ${end}) of a ${buffer.length}-byte buffer in place`);
  buffer.writeUInt8(0, start - PREFIX_BYTES);
  buffer.writeUInt32BE(end - start, start - PREFIX_BYTES + 1);
  return buffer.subarray(start - PREFIX_BYTES, end);
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
  /** Streaming methods (keyed like the unary handlers), e.g. BuildKit's filesync DiffCopy. */
  streams?: ReadonlyMap<string, StreamingHandler>;
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
  session.on("stream", (stream, headers, _flags, rawHeaders: string[] = []) => {
    const streaming = headers[":method"] === "POST" ? options.streams?.get(String(headers[":path"] ?? "")) : undefined;
    if (streaming) void handleStreamingCall(stream, headers, rawHeaders, streaming);
    else handleStream(stream, headers, handlers, maxRequestBytes);
  });

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

function handleStream(
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  handlers: ReadonlyMap<string, UnaryHandler>,
  maxRequestBytes: number,
): void {
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

/**
 * Splits a byte stream into gRPC messages as they arrive (a message may span chunks, a chunk may hold
 * several). Throws GrpcStatusError on a compressed frame or a message beyond `maxMessageBytes`.
 */
export async function* readGrpcMessages(chunks: AsyncIterable<Buffer | string>, maxMessageBytes = 64 * 1024 * 1024): AsyncGenerator<Buffer> {
  let pending: Buffer = Buffer.alloc(0);
  for await (const chunk of chunks) {
    pending = pending.length === 0 ? Buffer.from(chunk) : Buffer.concat([pending, Buffer.from(chunk)]);
    while (pending.length >= PREFIX_BYTES) {
      if (pending.readUInt8(0) !== 0) throw new GrpcStatusError(GrpcStatus.UNIMPLEMENTED, "compressed gRPC messages are not supported");
      const length = pending.readUInt32BE(1);
      if (length > maxMessageBytes) throw new GrpcStatusError(GrpcStatus.RESOURCE_EXHAUSTED, `gRPC message of ${length} bytes is too large`);
      if (pending.length < PREFIX_BYTES + length) break;
      yield pending.subarray(PREFIX_BYTES, PREFIX_BYTES + length);
      pending = pending.subarray(PREFIX_BYTES + length);
    }
  }
  if (pending.length > 0) throw new GrpcStatusError(GrpcStatus.INTERNAL, "truncated gRPC message");
}

/**
 * Writes `data` (one framed message, or its parts) to an HTTP/2 stream as ONE non-empty buffer,
 * waiting for drain when the stream's buffer is full.
 *
 * Never a corked multi-part writev, never an empty chunk: Node's HTTP/2 keeps raw pointers to the
 * written buffers until it hands them to the socket, but completes a writev (releasing its buffers to
 * the garbage collector) as soon as an empty chunk at its end reaches the head of the stream's queue
 * — possibly while the writev's earlier parts (a 5-byte gRPC prefix) still wait in the session's
 * outgoing list. A prefix freed there would go out as other bytes, and the peer would read a wrong
 * message length ("grpc: received message larger than max"). One contiguous buffer per message has
 * no such window (large payloads are framed in place, frameInPlace, so they are not copied for it).
 */
export function writeWithBackpressure(stream: http2.Http2Stream, data: Buffer | readonly Buffer[], signal?: AbortSignal): Promise<void> {
  if (stream.destroyed || stream.closed) return Promise.reject(new GrpcStatusError(GrpcStatus.CANCELLED, "stream closed"));
  const bytes = Buffer.isBuffer(data) ? data : data.length === 1 ? data[0]! : Buffer.concat(data);
  if (bytes.length === 0) return Promise.resolve();
  if (stream.write(bytes)) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const done = () => {
      stream.off("drain", done);
      stream.off("close", closed);
      signal?.removeEventListener("abort", closed);
      resolve();
    };
    const closed = () => {
      stream.off("drain", done);
      stream.off("close", closed);
      signal?.removeEventListener("abort", closed);
      reject(new GrpcStatusError(GrpcStatus.CANCELLED, "stream closed"));
    };
    stream.on("drain", done);
    stream.on("close", closed);
    signal?.addEventListener("abort", closed, { once: true });
  });
}

async function handleStreamingCall(
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  rawHeaders: string[],
  handler: StreamingHandler,
): Promise<void> {
  stream.on("error", () => undefined);
  const controller = new AbortController();
  // A stream closed before our trailers went out was cancelled (RST_STREAM) or lost with its connection.
  let finished = false;
  stream.once("close", () => {
    if (!finished) controller.abort(new GrpcStatusError(GrpcStatus.CANCELLED, "call cancelled"));
  });
  let responded = false;
  const respond = () => {
    if (responded || stream.destroyed || stream.closed) return;
    responded = true;
    stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
  };
  let status: number = GrpcStatus.OK;
  let message = "";
  try {
    await handler({
      headers,
      values: (key) => {
        const wanted = key.toLowerCase();
        const out: string[] = [];
        for (let i = 0; i + 1 < rawHeaders.length; i += 2) if (rawHeaders[i]!.toLowerCase() === wanted) out.push(rawHeaders[i + 1]!);
        return out;
      },
      // A handler that stops reading (its protocol is done) must not reset the stream on the way out.
      messages: readGrpcMessages(
        (stream as unknown as { iterator(o: { destroyOnReturn: boolean }): AsyncIterable<Buffer> }).iterator({ destroyOnReturn: false }),
      ),
      send: (payload) => {
        respond();
        return writeWithBackpressure(stream, encodeGrpcMessage(payload), controller.signal);
      },
      sendFramed: (frame) => {
        respond();
        return writeWithBackpressure(stream, frame, controller.signal);
      },
      signal: controller.signal,
    });
  } catch (error) {
    status = error instanceof GrpcStatusError ? error.status : GrpcStatus.INTERNAL;
    message = error instanceof GrpcStatusError ? error.message : "internal error";
  }
  finished = true;
  if (stream.destroyed || stream.closed) return;
  if (!responded) return respondWithStatus(stream, status, message);
  stream.once("wantTrailers", () =>
    stream.sendTrailers(
      status === GrpcStatus.OK ? { "grpc-status": "0" } : { "grpc-status": String(status), "grpc-message": encodeGrpcMessageHeader(message) },
    ),
  );
  stream.end();
}
