/**
 * A BuildKit session over `Control.Session` (a bidirectional stream of BytesMessage): the stream is a
 * byte tunnel in which the *daemon* is the HTTP/2 client and Kiln the gRPC server, exactly as on the
 * Engine's `/session` (buildkit session/grpchijack). The session's id, name, shared key and the
 * methods it serves travel as the call's metadata (`X-Docker-Expose-Session-*`, lower-cased); a Solve
 * names the session id, and the daemon then calls back for files, secrets and registry credentials.
 * Used for standalone buildkitd; the Docker Engine takes the session on its own `/session`
 * (engineSession.ts), without this tunnel. Tunnel messages are a header plus slices of what the HTTP/2
 * server wrote, joined into one buffer per message (writeWithBackpressure: one write per message).
 */
import { Duplex } from "node:stream";
import { serveGrpc, type GrpcConnection, type StreamingHandler, type UnaryHandler } from "@kiln/docker/internal";
import { decodeBytesMessage, encodeBytesMessageHeader, SESSION_METHOD } from "./controlMessages.js";
import type { BidiCall, GrpcChannel } from "./grpcClient.js";

/** The largest tunnel chunk per BytesMessage (the daemon's gRPC server takes up to 4 MiB messages). */
const MAX_TUNNEL_CHUNK = 1024 * 1024;

export interface SessionOptions {
  id: string;
  /** Shown by the daemon (buildx uses the context directory's name). */
  name: string;
  /** Keys the daemon's cache of transferred local sources: the same key lets a later build send only changed files. */
  sharedKey: string;
  unary: ReadonlyMap<string, UnaryHandler>;
  streams: ReadonlyMap<string, StreamingHandler>;
  signal?: AbortSignal;
}

export interface BuildKitSession {
  readonly id: string;
  readonly closed: Promise<void>;
  close(): Promise<void>;
}

export function openSession(channel: GrpcChannel, options: SessionOptions): BuildKitSession {
  const methods = [...options.unary.keys(), ...options.streams.keys()];
  const call = channel.bidi(SESSION_METHOD, {
    signal: options.signal,
    metadata: {
      "x-docker-expose-session-uuid": options.id,
      "x-docker-expose-session-name": options.name,
      "x-docker-expose-session-sharedkey": options.sharedKey,
      "x-docker-expose-session-grpc-method": methods,
    },
  });
  const tunnel = new SessionTunnel(call);
  const grpc: GrpcConnection = serveGrpc(tunnel, options.unary, { streams: options.streams, maxRequestBytes: 4 * 1024 * 1024 });
  let closing: Promise<void> | undefined;
  return {
    id: options.id,
    closed: grpc.closed,
    close() {
      closing ??= (async () => {
        await grpc.close(500);
        call.cancel();
      })();
      return closing;
    },
  };
}

/** The HTTP/2 bytes inside the Session call, as a Duplex the gRPC server can run on. */
class SessionTunnel extends Duplex {
  private reading = false;

  constructor(private readonly call: BidiCall) {
    // Room for a few DATA packets in flight, so frames queue up and leave together (_writev).
    super({ writableHighWaterMark: 4 * 1024 * 1024 });
  }

  override _read(): void {
    if (this.reading) return;
    this.reading = true;
    void (async () => {
      try {
        for await (const message of this.call.messages) {
          const data = decodeBytesMessage(message);
          if (data.length > 0) this.push(data);
        }
        this.push(null);
      } catch (error) {
        // The daemon ended the session (or the call was cancelled): the tunnel ends with it.
        this.destroy(error as Error);
      }
    })();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.sendAll([chunk], callback);
  }

  /** The HTTP/2 server writes frame by frame (≤ 16 KiB each): queued frames go out together, in messages of up to MAX_TUNNEL_CHUNK. */
  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    this.sendAll(
      chunks.map((c) => c.chunk),
      callback,
    );
  }

  /** `chunks` as BytesMessages of up to MAX_TUNNEL_CHUNK bytes, each a header plus slices of the chunks. */
  private sendAll(chunks: Buffer[], callback: (error?: Error | null) => void): void {
    void (async () => {
      try {
        let parts: Buffer[] = [];
        let size = 0;
        const flush = async () => {
          if (size === 0) return;
          const message = [encodeBytesMessageHeader(size), ...parts];
          parts = [];
          size = 0;
          await this.call.send(message);
        };
        for (const chunk of chunks) {
          for (let offset = 0; offset < chunk.length; ) {
            const take = Math.min(chunk.length - offset, MAX_TUNNEL_CHUNK - size);
            parts.push(chunk.subarray(offset, offset + take));
            size += take;
            offset += take;
            if (size === MAX_TUNNEL_CHUNK) await flush();
          }
        }
        await flush();
        callback();
      } catch (error) {
        callback(error as Error);
      }
    })();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.call.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.call.cancel();
    callback(error);
  }
}
