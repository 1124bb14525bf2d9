// The session's filesync stream as the daemon reads it: many large files through serveGrpc to a slow
// HTTP/2 client that pauses at random, every gRPC message parsed back (prefix, length, payload) and
// every file's bytes checked against its sha256. Also the write discipline that keeps Node's HTTP/2
// from releasing a message's bytes before they are sent: each message is handed to the stream as ONE
// non-empty buffer (no corked multi-part writev, no empty chunk — see writeWithBackpressure).
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as http2 from "node:http2";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serveGrpc, type GrpcConnection, type StreamingHandler } from "../src/session/grpcServer.js";
import { HijackedStream } from "../src/session/hijackedStream.js";
import { varintField } from "../src/session/protobuf.js";
import { decodePacket, diffCopyHandler, DIFF_COPY_METHOD, SourceTree, type SourceEntry } from "../src/session/filesync.js";

const MAX_MESSAGE = 4 * 1024 * 1024; // the daemon's session client refuses larger messages

function frame(message: Buffer): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

/** The prototype every server-side HTTP/2 stream shares (ServerHttp2Stream is not exported). */
async function serverStreamPrototype(): Promise<object> {
  const server = http2.createServer();
  const proto = new Promise<object>((resolve) =>
    server.once("stream", (stream) => {
      resolve(Object.getPrototypeOf(stream) as object);
      stream.respond({ ":status": 200 }, { endStream: true });
    }),
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const client = http2.connect(`http://127.0.0.1:${(server.address() as { port: number }).port}`);
  client.request({ ":path": "/" }).resume();
  try {
    return await proto;
  } finally {
    client.destroy();
    server.close();
  }
}

interface WriteLog {
  /** Every chunk handed to a server stream's write(), per stream. */
  writes: Map<object, Buffer[]>;
  restore(): void;
}

/** Records what the gRPC server hands to its HTTP/2 streams (the bytes still go out unchanged). */
function recordStreamWrites(proto: object, onEmptyWriteDone?: () => void): WriteLog {
  const target = proto as { write: (...args: unknown[]) => boolean };
  const hadWrite = Object.hasOwn(target, "write");
  const write = target.write;
  const log: WriteLog = {
    writes: new Map(),
    restore: () => {
      if (hadWrite) target.write = write;
      else delete (target as { write?: unknown }).write;
    },
  };
  target.write = function (this: object, chunk: unknown, ...rest: unknown[]) {
    const list = log.writes.get(this) ?? [];
    list.push(Buffer.from(chunk as Buffer)); // a copy: what the caller handed over, at that moment
    log.writes.set(this, list);
    // Node reports an empty chunk's write done from inside its HTTP/2 send loop: run JS (a GC) right there.
    if (onEmptyWriteDone && (chunk as Buffer).length === 0 && rest.length === 0) return write.call(this, chunk, () => onEmptyWriteDone());
    return write.call(this, chunk, ...rest);
  };
  return log;
}

/**
 * Plays the daemon's filesync receiver: REQ for every file as its STAT arrives, reads slowly (random
 * pauses, HTTP/2 flow control holding the sender back), parses every gRPC message and hashes every file's DATA.
 */
async function receiveAll(port: number, fileIds: ReadonlySet<number>): Promise<{ digests: Map<number, string>; badPrefixes: string[]; messages: number }> {
  const client = http2.connect(`http://127.0.0.1:${port}`);
  client.on("error", () => undefined);
  const call = client.request({ ":method": "POST", ":path": DIFF_COPY_METHOD, "content-type": "application/grpc", te: "trailers", "dir-name": "context" });
  const hashes = new Map<number, ReturnType<typeof createHash>>();
  const digests = new Map<number, string>();
  const badPrefixes: string[] = [];
  let messages = 0;
  let statId = 0;
  let pending = Buffer.alloc(0);
  let chunks: Buffer[] = [];
  let buffered = 0;
  let need = 5;
  try {
    await new Promise<void>((resolve, reject) => {
      const deadline = setTimeout(() => reject(new Error(`no FIN within 45 s (${digests.size}/${fileIds.size} files)`)), 45_000);
      call.on("error", reject);
      call.on("close", () => {
        clearTimeout(deadline);
        resolve();
      });
      call.on("data", (chunk: Buffer) => {
        chunks.push(chunk);
        buffered += chunk.length;
        if (buffered >= need) {
          pending = Buffer.concat([pending, ...chunks]);
          chunks = [];
          need = 5;
          while (pending.length >= 5) {
            const length = pending.readUInt32BE(1);
            if (pending[0] !== 0 || length > MAX_MESSAGE) {
              badPrefixes.push(pending.subarray(0, 5).toString("hex"));
              call.close(http2.constants.NGHTTP2_CANCEL);
              return;
            }
            if (pending.length < 5 + length) {
              need = 5 + length;
              break;
            }
            const packet = decodePacket(pending.subarray(5, 5 + length));
            pending = pending.subarray(5 + length);
            messages++;
            if (packet.type === 0 && length > 0) {
              const id = statId++;
              if (!fileIds.has(id)) continue; // a directory
              hashes.set(id, createHash("sha256"));
              call.write(frame(Buffer.concat([varintField(1, 1), ...(id ? [varintField(3, id)] : [])]))); // REQ
            } else if (packet.type === 2 && packet.data.length > 0) {
              hashes.get(packet.id)!.update(packet.data);
            } else if (packet.type === 2) {
              digests.set(packet.id, hashes.get(packet.id)!.digest("hex"));
              if (digests.size === fileIds.size) call.end(frame(varintField(1, 3))); // FIN
            }
          }
          buffered = pending.length;
        }
        // A busy daemon: stop reading now and then, so the sender's buffers fill and drain.
        if (Math.random() < 0.03) {
          call.pause();
          setTimeout(() => call.resume(), Math.random() * 8);
        }
      });
    });
  } finally {
    client.destroy();
  }
  return { digests, badPrefixes, messages };
}

describe("filesync DiffCopy framing under a slow, pausing reader", () => {
  let dir: string;
  let proto: object;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "kiln-session-framing-"));
    proto = await serverStreamPrototype();
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("every message arrives whole and every file byte-exact; each message is written as one non-empty buffer", async () => {
    // Large files (several DATA packets each, sizes off the 1 MiB packet boundary), small ones, an empty one, and in-memory content.
    const sizes = [2 * 1024 * 1024 + 7, 1024 * 1024 + 1, 3 * 1024 * 1024 - 3, 4096, 1, 0, 1024 * 1024 + 4099];
    const entries: SourceEntry[] = [];
    const expected = new Map<string, string>();
    sizes.forEach((size, i) => {
      const data = randomBytes(size);
      const name = `d${i % 3}/f${i}.bin`;
      writeFileSync(path.join(dir, `f${i}.bin`), data);
      expected.set(name, createHash("sha256").update(data).digest("hex"));
      entries.push({ path: name, type: "file", mode: 0o644, size, modTimeNs: BigInt(i + 1), hostPath: path.join(dir, `f${i}.bin`) });
    });
    const inline = randomBytes(1024 * 1024 + 512);
    expected.set("Dockerfile", createHash("sha256").update(inline).digest("hex"));
    entries.push({ path: "Dockerfile", type: "file", mode: 0o644, size: inline.length, modTimeNs: 99n, content: inline });
    const tree = new SourceTree(entries);
    // STAT ids are positions in the tree's order (directories included): map each file's id to its path.
    const fileIds = new Map<number, string>();
    tree.entries.forEach((e, id) => e.type === "file" && fileIds.set(id, e.path));

    const log = recordStreamWrites(proto);
    const connections: GrpcConnection[] = [];
    const server: Server = createServer((socket) =>
      connections.push(
        serveGrpc(new HijackedStream(socket, Buffer.alloc(0)), new Map(), {
          streams: new Map([[DIFF_COPY_METHOD, diffCopyHandler(new Map([["context", tree]]))]]),
        }),
      ),
    );
    try {
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      const port = (server.address() as { port: number }).port;
      const received = await receiveAll(port, new Set(fileIds.keys()));

      expect(received.badPrefixes).toEqual([]);
      const byPath = new Map([...received.digests].map(([id, digest]) => [fileIds.get(id)!, digest]));
      expect(byPath).toEqual(expected);

      // The write discipline: per stream, every write is exactly one whole gRPC message, never empty.
      const writes = [...log.writes.values()].flat();
      expect(writes.length).toBe(received.messages);
      const malformed = writes.filter((w) => w.length < 5 || w[0] !== 0 || w.readUInt32BE(1) + 5 !== w.length).map((w) => w.length);
      expect(malformed).toEqual([]);
    } finally {
      log.restore();
      await Promise.all(connections.map((c) => c.close(100)));
      server.close();
    }
  }, 60_000);

  it("empty messages on two streams, with a GC whenever Node reports an empty write done: every prefix arrives as written", async () => {
    // The mechanism behind "grpc: received message larger than max": a corked [prefix, <empty>] writev
    // is reported done (its buffers released) while the prefix still waits in Node's outgoing list; a
    // GC run then (here: by another stream's empty write completing in the same send pass) frees it,
    // and other bytes go out in its place. Kiln's empty STAT ending each listing had that shape.
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const MESSAGES = 150;
    const emptyMessages: StreamingHandler = async (call) => {
      for (let i = 0; i < MESSAGES; i++) {
        await call.send(Buffer.alloc(0));
        await new Promise((resolve) => setImmediate(resolve)); // one message per send pass
      }
    };
    const log = recordStreamWrites(proto, () => {
      gc();
      // Reuse what was freed, so a released prefix shows as other bytes.
      const reuse: Uint8Array[] = [];
      for (let i = 0; i < 2000; i++) reuse.push(new Uint8Array(new ArrayBuffer(5)).fill(0xee));
    });
    const connections: GrpcConnection[] = [];
    const server: Server = createServer((socket) =>
      connections.push(serveGrpc(new HijackedStream(socket, Buffer.alloc(0)), new Map(), { streams: new Map([["/kiln.test/Empty", emptyMessages]]) })),
    );
    const client = { session: undefined as http2.ClientHttp2Session | undefined };
    try {
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      client.session = http2.connect(`http://127.0.0.1:${(server.address() as { port: number }).port}`);
      const read = (): Promise<Buffer> =>
        new Promise((resolve, reject) => {
          const call = client.session!.request({ ":method": "POST", ":path": "/kiln.test/Empty", "content-type": "application/grpc", te: "trailers" });
          call.end();
          const parts: Buffer[] = [];
          const deadline = setTimeout(() => reject(new Error("no end within 30 s")), 30_000);
          call.on("data", (c: Buffer) => parts.push(c));
          call.on("error", reject);
          call.on("close", () => {
            clearTimeout(deadline);
            resolve(Buffer.concat(parts));
          });
        });
      const bodies = await Promise.all([read(), read()]);
      for (const body of bodies) {
        const prefixes = Array.from({ length: body.length / 5 }, (_, i) => body.subarray(i * 5, i * 5 + 5).toString("hex"));
        expect({ bytes: body.length, wrong: prefixes.filter((p) => p !== "0000000000").slice(0, 5) }).toEqual({ bytes: MESSAGES * 5, wrong: [] });
      }
    } finally {
      log.restore();
      client.session?.destroy();
      await Promise.all(connections.map((c) => c.close(100)));
      server.close();
    }
  }, 40_000);
});
