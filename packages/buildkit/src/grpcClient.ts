/**
 * The client side of gRPC over one Node HTTP/2 session: unary, server-streaming and bidirectional
 * calls with cancellation. Node's `http2` is used rather than `@grpc/grpc-js` because the transport
 * is not always a socket grpc-js can dial: the Docker Engine's `/grpc` is an HTTP upgrade (h2c) on
 * the Engine API connection, which `http2.connect(url, { createConnection })` takes as it is.
 *
 * Wire format: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md (length-prefixed
 * messages; status in trailers, or in the headers of a trailers-only answer).
 */
import * as http2 from "node:http2";
import { encodeGrpcFrame, GrpcStatus, grpcFrameParts, readGrpcMessages, writeWithBackpressure } from "@kiln/docker/internal";

/** A call that ended with a gRPC status other than OK (or a transport failure, as UNAVAILABLE). */
export class GrpcCallError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly method: string,
  ) {
    super(message);
    this.name = "GrpcCallError";
  }
}

/** gRPC status codes used here beyond those @kiln/docker's server names. */
export const GrpcCode = { ...GrpcStatus, UNKNOWN: 2, DEADLINE_EXCEEDED: 4, UNAVAILABLE: 14, UNAUTHENTICATED: 16 } as const;

export interface CallOptions {
  signal?: AbortSignal;
  /** Extra request metadata (lower-case keys; an array sends the key once per value). */
  metadata?: Record<string, string | string[]>;
}

export interface BidiCall {
  /** Sends one message (parts are joined: HTTP/2 gets each message as one non-empty write, see grpcServer.ts). */
  send(message: Buffer | readonly Buffer[]): Promise<void>;
  /** Half-closes the request side. */
  end(): void;
  /** The response messages; throws GrpcCallError when the call ends with a non-OK status. */
  readonly messages: AsyncGenerator<Buffer>;
  /** Cancels the call (RST_STREAM CANCEL): the server sees its context cancelled. */
  cancel(): void;
}

function decodeGrpcMessage(value: unknown): string {
  const text = Array.isArray(value) ? String(value[0] ?? "") : String(value ?? "");
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

export class GrpcChannel {
  constructor(readonly session: http2.ClientHttp2Session) {}

  get closed(): boolean {
    return this.session.closed || this.session.destroyed;
  }

  /** One request message, one response message. */
  async unary(method: string, request: Buffer, options: CallOptions = {}): Promise<Buffer> {
    const call = this.open(method, options);
    call.end(encodeGrpcFrame(request));
    let response: Buffer | undefined;
    for await (const message of call.messages) response ??= Buffer.from(message);
    if (!response) throw new GrpcCallError(GrpcCode.INTERNAL, "no response message", method);
    return response;
  }

  /** One request message, a stream of responses. */
  serverStream(method: string, request: Buffer, options: CallOptions = {}): AsyncGenerator<Buffer> {
    const call = this.open(method, options);
    call.end(encodeGrpcFrame(request));
    return call.messages;
  }

  bidi(method: string, options: CallOptions = {}): BidiCall {
    const call = this.open(method, options);
    return {
      send: (message) => writeWithBackpressure(call.stream, grpcFrameParts(message), options.signal),
      end: () => call.end(),
      messages: call.messages,
      cancel: call.cancel,
    };
  }

  close(): void {
    if (!this.closed) this.session.close();
    // A session whose peer never answers GOAWAY must not keep the process alive.
    setTimeout(() => this.session.destroy(), 2000).unref();
  }

  private open(method: string, options: CallOptions) {
    if (this.closed) throw new GrpcCallError(GrpcCode.UNAVAILABLE, "connection closed", method);
    const stream = this.session.request({
      ":method": "POST",
      ":path": method,
      "content-type": "application/grpc",
      te: "trailers",
      ...options.metadata,
    });
    stream.on("error", () => undefined); // seen through `messages`
    let status: { code: number; message: string } | undefined;
    let httpStatus: number | undefined;
    stream.on("response", (headers) => {
      httpStatus = Number(headers[":status"]);
      if (headers["grpc-status"] !== undefined) status = { code: Number(headers["grpc-status"]), message: decodeGrpcMessage(headers["grpc-message"]) };
    });
    stream.on("trailers", (trailers) => {
      if (trailers["grpc-status"] !== undefined) status = { code: Number(trailers["grpc-status"]), message: decodeGrpcMessage(trailers["grpc-message"]) };
    });
    let cancelled = false;
    const cancel = () => {
      cancelled = true;
      if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
    };
    const signal = options.signal;
    if (signal?.aborted) cancel();
    signal?.addEventListener("abort", cancel, { once: true });

    async function* messages(): AsyncGenerator<Buffer> {
      try {
        try {
          yield* readGrpcMessages(stream as AsyncIterable<Buffer>);
        } catch (error) {
          if (cancelled) throw new GrpcCallError(GrpcCode.CANCELLED, "call cancelled", method);
          if (status && status.code !== 0) throw new GrpcCallError(status.code, status.message, method);
          throw new GrpcCallError(GrpcCode.UNAVAILABLE, (error as Error).message, method);
        }
        if (cancelled) throw new GrpcCallError(GrpcCode.CANCELLED, "call cancelled", method);
        if (!status) {
          const reason = httpStatus !== undefined && httpStatus !== 200 ? `HTTP ${httpStatus}` : "the stream ended without a gRPC status";
          throw new GrpcCallError(GrpcCode.UNAVAILABLE, reason, method);
        }
        if (status.code !== 0) throw new GrpcCallError(status.code, status.message, method);
      } finally {
        signal?.removeEventListener("abort", cancel);
        if (!stream.destroyed && !stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
      }
    }
    return {
      stream,
      end: (data?: Buffer) => (data ? stream.end(data) : stream.end()),
      messages: messages(),
      cancel,
    };
  }
}
