// The pieces of a build session below the daemon: the protobuf writer, the session's messages, gRPC
// framing, and the unary gRPC server answering a real HTTP/2 client (Node's) over loopback.
import * as http2 from "node:http2";
import { createServer, type Server } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import {
  decodeGrpcFrames,
  encodeGrpcFrame,
  encodeGrpcMessageHeader,
  GrpcStatus,
  GrpcStatusError,
  serveGrpc,
  type GrpcConnection,
  type UnaryHandler,
} from "../src/session/grpcServer.js";
import { HijackedStream } from "../src/session/hijackedStream.js";
import { asNumber, asString, encodeVarint, lengthDelimitedField, readFields, varintField } from "../src/session/protobuf.js";
import {
  decodeGetSecretRequest,
  decodeGetSecretResponse,
  decodeHealthCheckRequest,
  encodeGetSecretRequest,
  encodeGetSecretResponse,
  encodeHealthCheckResponse,
  GET_SECRET_METHOD,
  HEALTH_CHECK_METHOD,
  ServingStatus,
} from "../src/session/sessionMessages.js";

describe("protobuf writer", () => {
  it('writes the encoding guide\'s examples: 150 in field 1, "testing" in field 2', () => {
    // https://protobuf.dev/programming-guides/encoding/
    expect(varintField(1, 150).toString("hex")).toBe("089601");
    expect(lengthDelimitedField(2, "testing").toString("hex")).toBe("120774657374696e67");
  });

  it("varints round-trip through the reader, including multi-byte, 64-bit and negative values", () => {
    const values = [0, 1, 127, 128, 300, 16_383, 16_384, 2 ** 32, Number.MAX_SAFE_INTEGER, -1, -2_147_483_648];
    const message = Buffer.concat(values.map((value, i) => varintField(i + 1, value)));
    const read = [...readFields(message)];
    expect(read.map((f) => f.field)).toEqual(values.map((_, i) => i + 1));
    expect(read.map((f) => asNumber(f.wire))).toEqual(values);
    expect(encodeVarint(-1)).toHaveLength(10); // two's complement over 64 bits, as protobuf writes int64 -1
    expect(varintField(3, true).toString("hex")).toBe("1801");
  });

  it("length-delimited fields keep bytes exactly (binary, UTF-8, long)", () => {
    const binary = Buffer.from([0, 255, 10, 13, 0x80]);
    const long = "x".repeat(70_000); // a 3-byte length varint
    const fields = [...readFields(Buffer.concat([lengthDelimitedField(1, binary), lengthDelimitedField(2, "héllo ✓"), lengthDelimitedField(3, long)]))];
    expect(fields[0]!.wire.value).toEqual(binary);
    expect(asString(fields[1]!.wire)).toBe("héllo ✓");
    expect(asString(fields[2]!.wire)).toBe(long);
  });

  it("refuses an invalid field number", () => {
    expect(() => varintField(0, 1)).toThrow(RangeError);
    expect(() => lengthDelimitedField(2 ** 29, "x")).toThrow(RangeError);
  });
});

describe("session messages", () => {
  it("GetSecretRequest round-trips its ID and annotations map", () => {
    const annotations = new Map([
      ["kind", "npm"],
      ["", "empty-key"],
    ]);
    const decoded = decodeGetSecretRequest(encodeGetSecretRequest({ id: "npm_token", annotations }));
    expect(decoded.id).toBe("npm_token");
    expect(decoded.annotations).toEqual(annotations);
  });

  it("GetSecretRequest decoding skips fields it does not know (a newer daemon)", () => {
    const message = Buffer.concat([varintField(7, 42), lengthDelimitedField(1, "tok"), lengthDelimitedField(9, Buffer.from([1, 2, 3]))]);
    expect(decodeGetSecretRequest(message)).toEqual({ id: "tok", annotations: new Map() });
  });

  it("GetSecretResponse carries the bytes as field 1 (and an empty value as an empty message)", () => {
    const data = Buffer.from("s3cr3t\nwith newline\u0000", "utf8");
    const encoded = encodeGetSecretResponse(data);
    expect([...readFields(encoded)].map((f) => f.field)).toEqual([1]);
    expect(decodeGetSecretResponse(encoded)).toEqual(data);
    expect(encodeGetSecretResponse(Buffer.alloc(0))).toHaveLength(0);
  });

  it("HealthCheckResponse is { status = 1 } with SERVING = 1", () => {
    const fields = [...readFields(encodeHealthCheckResponse(ServingStatus.SERVING))];
    expect(fields).toHaveLength(1);
    expect(fields[0]!.field).toBe(1);
    expect(asNumber(fields[0]!.wire)).toBe(1);
    expect(decodeHealthCheckRequest(lengthDelimitedField(1, "svc"))).toEqual({ service: "svc" });
  });
});

describe("gRPC framing", () => {
  it("prefixes a message with a zero compression flag and its big-endian length", () => {
    const message = Buffer.alloc(300, 7);
    const frame = encodeGrpcFrame(message);
    expect(frame.readUInt8(0)).toBe(0);
    expect(frame.readUInt32BE(1)).toBe(300);
    expect(frame.subarray(5)).toEqual(message);
  });

  it("splits a body into its messages, empty ones included", () => {
    const body = Buffer.concat([encodeGrpcFrame(Buffer.from("a")), encodeGrpcFrame(Buffer.alloc(0)), encodeGrpcFrame(Buffer.from("bcd"))]);
    expect(decodeGrpcFrames(body).map((m) => m.toString())).toEqual(["a", "", "bcd"]);
    expect(decodeGrpcFrames(Buffer.alloc(0))).toEqual([]);
  });

  it("refuses truncated and compressed frames with a gRPC status", () => {
    const frame = encodeGrpcFrame(Buffer.from("hello"));
    const statusOf = (body: Buffer) => {
      try {
        decodeGrpcFrames(body);
      } catch (error) {
        return (error as GrpcStatusError).status;
      }
      return "accepted";
    };
    expect(statusOf(frame.subarray(0, 3))).toBe(GrpcStatus.INTERNAL);
    expect(statusOf(frame.subarray(0, frame.length - 1))).toBe(GrpcStatus.INTERNAL);
    const compressed = Buffer.from(frame);
    compressed[0] = 1;
    expect(statusOf(compressed)).toBe(GrpcStatus.UNIMPLEMENTED);
  });

  it("percent-encodes grpc-message outside printable ASCII and '%'", () => {
    expect(encodeGrpcMessageHeader("secret tok not found")).toBe("secret tok not found");
    expect(encodeGrpcMessageHeader("100% é\n")).toBe("100%25 %C3%A9%0A");
  });
});

interface CallResult {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  messages: Buffer[];
}

/** A gRPC unary call as grpc-go makes it (the daemon's client): POST, te: trailers, grpc-timeout. */
function call(client: http2.ClientHttp2Session, path: string, message: Buffer | Buffer[]): Promise<CallResult> {
  return new Promise((resolve, reject) => {
    const stream = client.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", "grpc-timeout": "9999786u" });
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on("response", (h) => (headers = h));
    stream.on("trailers", (t) => (trailers = t));
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("end", () => resolve({ headers, trailers, messages: decodeGrpcFrames(Buffer.concat(chunks)) }));
    stream.on("error", reject);
    stream.end(Array.isArray(message) ? Buffer.concat(message) : message);
  });
}

/** grpc-status and grpc-message, from the trailers or (trailers-only response) the headers. */
const statusOf = (r: CallResult) => ({
  status: Number(r.trailers["grpc-status"] ?? r.headers["grpc-status"]),
  message: decodeURIComponent(String(r.trailers["grpc-message"] ?? r.headers["grpc-message"] ?? "")),
});

let listener: Server | undefined;
let client: http2.ClientHttp2Session | undefined;
const connections: GrpcConnection[] = [];
afterEach(async () => {
  client?.destroy();
  await Promise.all(connections.splice(0).map((c) => c.close()));
  await new Promise<void>((resolve) => (listener ? listener.close(() => resolve()) : resolve()));
  listener = undefined;
  client = undefined;
});

/** A loopback server that serves `handlers` on each accepted socket (through HijackedStream, as a session does). */
async function serve(
  handlers: ReadonlyMap<string, UnaryHandler>,
  handshake: "perform" | "server",
  maxRequestBytes?: number,
): Promise<http2.ClientHttp2Session> {
  listener = createServer((socket) => connections.push(serveGrpc(new HijackedStream(socket, Buffer.alloc(0)), handlers, { handshake, maxRequestBytes })));
  await new Promise<void>((resolve) => listener!.listen(0, "127.0.0.1", resolve));
  const { port } = listener.address() as { port: number };
  client = http2.connect(`http://127.0.0.1:${port}`);
  return client;
}

const handlers = new Map<string, UnaryHandler>([
  [HEALTH_CHECK_METHOD, () => encodeHealthCheckResponse(ServingStatus.SERVING)],
  [
    GET_SECRET_METHOD,
    (request) => {
      const { id } = decodeGetSecretRequest(request);
      if (id === "tok") return encodeGetSecretResponse(Buffer.from("value-of-tok"));
      if (id === "boom") throw new Error("internal detail that must not be sent");
      throw new GrpcStatusError(GrpcStatus.NOT_FOUND, `secret ${id} not found`);
    },
  ],
]);

describe.each(["perform", "server"] as const)("serveGrpc (HTTP/2 handshake: %s)", (handshake) => {
  it("answers Health/Check with SERVING and grpc-status 0 in the trailers", async () => {
    const session = await serve(handlers, handshake);
    const result = await call(session, HEALTH_CHECK_METHOD, encodeGrpcFrame(Buffer.alloc(0)));
    expect(result.headers[":status"]).toBe(200);
    expect(result.headers["content-type"]).toBe("application/grpc");
    expect(statusOf(result).status).toBe(GrpcStatus.OK);
    expect(result.messages).toHaveLength(1);
    expect(asNumber([...readFields(result.messages[0]!)][0]!.wire)).toBe(ServingStatus.SERVING);
  });

  it("serves a known secret; an unknown one is NOT_FOUND naming the ID; several calls share the connection", async () => {
    const session = await serve(handlers, handshake);
    const [found, missing] = await Promise.all([
      call(session, GET_SECRET_METHOD, encodeGrpcFrame(encodeGetSecretRequest({ id: "tok" }))),
      call(session, GET_SECRET_METHOD, encodeGrpcFrame(encodeGetSecretRequest({ id: "nope", annotations: new Map([["a", "b"]]) }))),
    ]);
    expect(statusOf(found).status).toBe(GrpcStatus.OK);
    expect(decodeGetSecretResponse(found.messages[0]!).toString()).toBe("value-of-tok");
    expect(statusOf(missing)).toEqual({ status: GrpcStatus.NOT_FOUND, message: "secret nope not found" });
    expect(missing.messages).toEqual([]);
  });

  it("an unknown method is UNIMPLEMENTED; a failing handler is INTERNAL without its detail", async () => {
    const session = await serve(handlers, handshake);
    const unknown = await call(session, "/moby.filesync.v1.Auth/Credentials", encodeGrpcFrame(Buffer.alloc(0)));
    expect(statusOf(unknown).status).toBe(GrpcStatus.UNIMPLEMENTED);
    const failing = await call(session, GET_SECRET_METHOD, encodeGrpcFrame(encodeGetSecretRequest({ id: "boom" })));
    expect(statusOf(failing)).toEqual({ status: GrpcStatus.INTERNAL, message: "internal error" });
  });

  it("refuses two messages in a unary call, and a request over the size limit", async () => {
    const session = await serve(handlers, handshake, 64);
    const two = await call(session, GET_SECRET_METHOD, [
      encodeGrpcFrame(encodeGetSecretRequest({ id: "tok" })),
      encodeGrpcFrame(encodeGetSecretRequest({ id: "tok" })),
    ]);
    expect(statusOf(two).status).toBe(GrpcStatus.INTERNAL);
    const big = await call(session, GET_SECRET_METHOD, encodeGrpcFrame(encodeGetSecretRequest({ id: "x".repeat(100) })));
    expect(statusOf(big).status).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
  });

  it("close() sends GOAWAY and resolves once the socket is released; the peer sees the session end", async () => {
    const session = await serve(handlers, handshake);
    await call(session, HEALTH_CHECK_METHOD, encodeGrpcFrame(Buffer.alloc(0)));
    const peerClosed = new Promise<void>((resolve) => session.once("close", () => resolve()));
    const connection = connections[0]!;
    await connection.close();
    await connection.closed;
    await peerClosed;
  });
});
