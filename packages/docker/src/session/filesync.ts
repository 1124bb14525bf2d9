/**
 * Serves local sources to the daemon with filesync's DiffCopy (moby.filesync.v1.FileSync), the
 * sender half of tonistiigi/fsutil's protocol as `docker buildx build` runs it (fsutil send.go):
 *
 *   sender → STAT packet per entry (files, dirs, symlinks in fsutil path order), then an empty STAT;
 *   receiver → REQ {ID} for each file it lacks (ID = the entry's index among the STATs);
 *   sender → DATA {ID, bytes}…, then an empty DATA {ID} ending that file;
 *   receiver → FIN; sender → FIN. An ERR packet from either side ends the transfer.
 *
 * Messages (fsutil types/wire.proto, types/stat.proto):
 *   Packet { PacketType type = 1; Stat stat = 2; uint32 ID = 3; bytes data = 4; }  STAT 0 REQ 1 DATA 2 FIN 3 ERR 4
 *   Stat { string path = 1; uint32 mode = 2; uint32 uid = 3; uint32 gid = 4; int64 size = 5; int64 modTime = 6; string linkname = 7; }
 * `mode` is a Go os.FileMode (type bits high, permissions low). The receiver compares each entry's
 * stat with its cached copy of the source (keyed by the session's shared key) and requests only what
 * differs — so modTime must change when content does (a real mtime, or a content-derived one).
 *
 * The daemon's include/exclude patterns (from the dockerfile frontend: `.dockerignore` rules,
 * `include-patterns` for the Dockerfile) are applied to the tree Kiln lists — which is already
 * filtered by Kiln's own rules; nothing outside it is ever read.
 *
 * One server for both builders: @kiln/docker serves a build's context and Dockerfile through the
 * Engine's `/session` (buildOne.ts, `remote=client-session`), @kiln/buildkit through Control.Session.
 */
import { createHash, type Hash } from "node:crypto";
import { open, type FileHandle } from "node:fs/promises";
import { assertListed, IgnoreMatcher, openFailure, openPath, OPEN_LISTED_FLAGS, sizeChanged, sourceChanged, type WalkEntry } from "@kiln/core/plugin";
import { frameInPlace, GrpcStatus, GrpcStatusError, type StreamingCall, type StreamingHandler } from "./grpcServer.js";
import { asBytes, asNumber, encodeVarint, lengthDelimitedField, readFields, varintField } from "./protobuf.js";
import { followLinks } from "./followPaths.js";

export const DIFF_COPY_METHOD = "/moby.filesync.v1.FileSync/DiffCopy";

const PACKET_STAT = 0;
const PACKET_REQ = 1;
const PACKET_DATA = 2;
const PACKET_FIN = 3;
const PACKET_ERR = 4;

/** Go's os.FileMode type bits. */
const GO_MODE_DIR = 0x80000000;
const GO_MODE_SYMLINK = 0x08000000;

/** Bytes per DATA packet: fsutil sends 32 KiB; 1 MiB costs both ends fewer messages (bench/RESULTS.md) and stays well under the 4 MiB gRPC message limit of the daemon's session client. */
const DATA_CHUNK = 1024 * 1024;
/**
 * Room left in front of each chunk read from a file, for its DATA packet header (≤ 12 bytes: type,
 * a 32-bit ID, the data key and length) and gRPC prefix (5): the chunk goes out framed in place, as
 * one buffer, never copied (grpcServer.ts writeWithBackpressure says why one buffer).
 */
const FRAME_HEADROOM = 32;

export interface SourceEntry {
  /** Relative POSIX path, no `.`/`..` parts. */
  path: string;
  type: "file" | "dir" | "symlink";
  /** Permission bits (0o644, 0o755…). */
  mode: number;
  size: number;
  /** Nanoseconds since the epoch; must change when the content does (see the module comment). */
  modTimeNs: bigint;
  linkTarget?: string;
  /** Where a file's bytes are read from… */
  hostPath?: string;
  /** …or the bytes themselves (a rendered Dockerfile). */
  content?: Buffer;
  /** The listing's entry and its pinned sha256: the file is opened and checked as core's build context does (listedFile.ts). */
  listed?: { entry: WalkEntry; digest: Buffer };
}

/** fsutil's ComparePath: bytewise, with `/` before every other byte (a directory's entries follow it directly). */
export function comparePath(a: string, b: string): number {
  const x = Buffer.from(a, "utf8");
  const y = Buffer.from(b, "utf8");
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) {
    if (x[i] === y[i]) continue;
    if (x[i] === 0x2f) return -1;
    if (y[i] === 0x2f) return 1;
    return x[i]! - y[i]!;
  }
  return x.length - y.length;
}

/** One local source: entries in fsutil order, every parent directory present. */
export class SourceTree {
  readonly entries: readonly SourceEntry[];
  /** Bytes of file content the tree holds. */
  readonly bytes: number;
  private byPath: Map<string, SourceEntry> | undefined;

  constructor(entries: Iterable<SourceEntry>) {
    const byPath = new Map<string, SourceEntry>();
    for (const entry of entries) {
      byPath.set(entry.path, entry);
      const parts = entry.path.split("/");
      for (let i = 1; i < parts.length; i++) {
        const dir = parts.slice(0, i).join("/");
        if (!byPath.has(dir)) byPath.set(dir, { path: dir, type: "dir", mode: 0o755, size: 0, modTimeNs: 0n });
      }
    }
    this.entries = [...byPath.values()].sort((a, b) => comparePath(a.path, b.path));
    this.bytes = this.entries.reduce((n, e) => n + (e.type === "file" ? e.size : 0), 0);
  }

  /**
   * The entries the daemon asked for: not excluded, and (with include patterns or follow paths)
   * included themselves, inside an included directory, or a directory on the way to one — as
   * fsutil's walker selects them. Follow paths add themselves and the targets of symlinks on the
   * way as include patterns (fsutil FollowLinks).
   */
  select(includePatterns: readonly string[], excludePatterns: readonly string[], followPaths: readonly string[] = []): SourceEntry[] {
    if (followPaths.length > 0) {
      const followed = followLinks(
        followPaths,
        (path) => this.linkAt(path),
        (dir) => this.namesIn(dir),
      );
      if (followed) includePatterns = [...includePatterns, ...followed];
    }
    const excludes = excludePatterns.length > 0 ? new IgnoreMatcher(excludePatterns) : undefined;
    const includes = includePatterns.length > 0 ? new IgnoreMatcher(includePatterns) : undefined;
    const kept = this.entries.filter((e) => !excludes?.matches(e.path));
    if (!includes) return kept;
    const included = kept.filter((e) => includes.matches(e.path));
    const parents = new Set<string>();
    for (const e of included) {
      const parts = e.path.split("/");
      for (let i = 1; i < parts.length; i++) parents.add(parts.slice(0, i).join("/"));
    }
    const chosen = new Set([...included.map((e) => e.path), ...parents]);
    return kept.filter((e) => chosen.has(e.path));
  }

  private linkAt(path: string): string | undefined {
    this.byPath ??= new Map(this.entries.map((e) => [e.path, e]));
    const entry = this.byPath.get(path);
    return entry?.type === "symlink" ? (entry.linkTarget ?? "") : undefined;
  }

  private namesIn(dir: string): string[] {
    const prefix = dir === "." ? "" : `${dir}/`;
    return this.entries.filter((e) => e.path.startsWith(prefix) && !e.path.slice(prefix.length).includes("/")).map((e) => e.path.slice(prefix.length));
  }
}

function goMode(entry: SourceEntry): number {
  const perm = entry.mode & 0o7777;
  if (entry.type === "dir") return (GO_MODE_DIR | perm) >>> 0;
  if (entry.type === "symlink") return (GO_MODE_SYMLINK | perm) >>> 0;
  return perm;
}

export function encodeStat(entry: SourceEntry): Buffer {
  const parts = [lengthDelimitedField(1, entry.path), varintField(2, goMode(entry))];
  if (entry.type === "file" && entry.size > 0) parts.push(varintField(5, entry.size));
  if (entry.modTimeNs !== 0n) parts.push(varintField(6, entry.modTimeNs));
  if (entry.type === "symlink" && entry.linkTarget) parts.push(lengthDelimitedField(7, entry.linkTarget));
  return Buffer.concat(parts);
}

export function encodePacket(type: number, fields: { stat?: Buffer; id?: number; data?: Buffer } = {}): Buffer {
  const parts: Buffer[] = [];
  if (type !== 0) parts.push(varintField(1, type));
  if (fields.stat) parts.push(lengthDelimitedField(2, fields.stat));
  if (fields.id) parts.push(varintField(3, fields.id));
  if (fields.data && fields.data.length > 0) parts.push(lengthDelimitedField(4, fields.data));
  return Buffer.concat(parts);
}

/** A DATA packet as [everything before the bytes, the bytes] (the gRPC server joins them into the one buffer it writes). */
export function encodeDataPacketParts(id: number, data: Buffer): [Buffer, Buffer] {
  return [dataPacketHeader(id, data.length), data];
}

function dataPacketHeader(id: number, length: number): Buffer {
  // Field 4 (data), wire type 2: key byte (4 << 3) | 2, then the length; the bytes follow.
  return Buffer.concat([varintField(1, PACKET_DATA), ...(id ? [varintField(3, id)] : []), Buffer.from([0x22]), encodeVarint(length)]);
}

/**
 * The framed DATA packet for the bytes at [FRAME_HEADROOM, end) of `buffer` (a buffer of the caller's
 * own, read into after FRAME_HEADROOM free bytes): header and prefix are written in front of the bytes.
 */
function frameDataPacketInPlace(id: number, buffer: Buffer, end: number): Buffer {
  const header = dataPacketHeader(id, end - FRAME_HEADROOM);
  const start = FRAME_HEADROOM - header.length;
  header.copy(buffer, start);
  return frameInPlace(buffer, start, end);
}

export function decodePacket(buf: Buffer): { type: number; id: number; data: Buffer } {
  const packet: { type: number; id: number; data: Buffer } = { type: 0, id: 0, data: Buffer.alloc(0) };
  for (const { field, wire } of readFields(buf)) {
    if (field === 1) packet.type = asNumber(wire);
    else if (field === 3) packet.id = asNumber(wire);
    else if (field === 4) packet.data = asBytes(wire);
  }
  return packet;
}

export interface TransferProgress {
  /** The local source's name (`context`, `dockerfile`). */
  dir: string;
  /** File bytes sent so far in this transfer. */
  bytes: number;
  files: number;
  done: boolean;
}

/**
 * The DiffCopy method serving `trees` by their `dir-name`. A file that cannot be sent as listed ends
 * the transfer at once (the daemon fails the build); `onFailure` is told Kiln's own error for it
 * (a SourceChangedError), which the daemon only sees as a message.
 */
export function diffCopyHandler(
  trees: ReadonlyMap<string, SourceTree>,
  onProgress?: (progress: TransferProgress) => void,
  onFailure?: (error: unknown) => void,
): StreamingHandler {
  return (call) => serveDiffCopy(call, trees, onProgress, onFailure);
}

/** A filesync option: values holding non-ASCII are query-escaped, flagged by `<key>-encoded` (buildkit filesync encodeOpts). */
function metadataValues(call: StreamingCall, key: string): string[] {
  const values = call.values(key);
  const flag = call.values(`${key}-encoded`)[0];
  if (flag === undefined || !/^(1|t|true)$/i.test(flag)) return values;
  return values.map((v) => {
    try {
      return decodeURIComponent(v.replace(/\+/g, " "));
    } catch {
      return v;
    }
  });
}

async function serveDiffCopy(
  call: StreamingCall,
  trees: ReadonlyMap<string, SourceTree>,
  onProgress?: (progress: TransferProgress) => void,
  onFailure?: (error: unknown) => void,
): Promise<void> {
  const dir = call.values("dir-name")[0] ?? "";
  const tree = trees.get(dir);
  if (!tree) throw new GrpcStatusError(GrpcStatus.NOT_FOUND, `no access allowed to dir ${JSON.stringify(dir)}`);
  const entries = tree.select(metadataValues(call, "include-patterns"), metadataValues(call, "exclude-patterns"), metadataValues(call, "followpaths"));

  // One writer at a time on the stream: stats and file data interleave as requests come in.
  let chain: Promise<void> = Promise.resolve();
  const send = (packet: Outgoing): Promise<void> =>
    (chain = chain.then(() => {
      if (!("framed" in packet)) return call.send(packet);
      // A transport that takes framed messages gets the chunk as it was read; otherwise packet and bytes as parts.
      return call.sendFramed ? call.sendFramed(packet.framed) : call.send(encodeDataPacketParts(packet.id, packet.data));
    }));
  const progress: TransferProgress = { dir, bytes: 0, files: 0, done: false };

  const requestable = new Map<number, SourceEntry>();
  const stats = (async () => {
    let id = 0;
    for (const entry of entries) {
      if (call.signal.aborted) return;
      if (entry.type === "file") requestable.set(id, entry);
      id++;
      await send(encodePacket(PACKET_STAT, { stat: encodeStat(entry) }));
    }
    await send(encodePacket(PACKET_STAT));
  })();
  stats.catch(() => undefined); // awaited below

  // The first file that fails ends the call now: the receiver would otherwise wait for its bytes.
  let failFiles!: (error: unknown) => void;
  const fileFailure = new Promise<never>((_, reject) => (failFiles = reject));
  fileFailure.catch(() => undefined);
  // Files are sent one after another, in request order.
  let files: Promise<void> = Promise.resolve();
  const queue = (id: number) => {
    const entry = requestable.get(id);
    if (!entry) throw new GrpcStatusError(GrpcStatus.INVALID_ARGUMENT, `invalid file id ${id}`);
    requestable.delete(id);
    files = files.then(async () => {
      await sendFile(entry, id, send, call.signal, (n) => {
        progress.bytes += n;
        onProgress?.(progress);
      });
      progress.files++;
    });
    files.catch((error: unknown) => {
      onFailure?.(error);
      failFiles(error instanceof GrpcStatusError ? error : new GrpcStatusError(GrpcStatus.INTERNAL, (error as Error)?.message ?? String(error)));
    });
  };

  const messages = call.messages[Symbol.asyncIterator]();
  for (;;) {
    const next = await Promise.race([messages.next(), fileFailure]);
    if (next.done) break;
    const packet = decodePacket(next.value);
    if (packet.type === PACKET_REQ) queue(packet.id);
    else if (packet.type === PACKET_ERR) throw new GrpcStatusError(GrpcStatus.INTERNAL, `error from receiver: ${packet.data.toString("utf8")}`);
    else if (packet.type === PACKET_FIN) {
      await stats;
      await files;
      await send(encodePacket(PACKET_FIN));
      await chain;
      progress.done = true;
      onProgress?.(progress);
      return;
    }
  }
  throw new GrpcStatusError(GrpcStatus.CANCELLED, "the receiver ended the transfer before FIN");
}

/** A packet to send: bytes (or parts), or a file chunk read with room in front (framed in place when the transport takes it so). */
type Outgoing = Buffer | readonly Buffer[] | { framed: Buffer; id: number; data: Buffer };

async function sendFile(
  entry: SourceEntry,
  id: number,
  send: (packet: Outgoing) => Promise<void>,
  signal: AbortSignal,
  sent: (n: number) => void,
): Promise<void> {
  if (entry.content) {
    for (let offset = 0; offset < entry.content.length; offset += DATA_CHUNK) {
      const data = entry.content.subarray(offset, offset + DATA_CHUNK);
      await send(encodeDataPacketParts(id, data));
      sent(data.length);
    }
  } else if (entry.hostPath) {
    const listed = entry.listed;
    let handle: FileHandle;
    try {
      handle = listed ? await open(openPath(listed.entry), OPEN_LISTED_FLAGS) : await open(entry.hostPath, "r");
    } catch (error) {
      if (listed) throw openFailure(listed.entry, error, SENDING);
      throw new GrpcStatusError(GrpcStatus.NOT_FOUND, `cannot read ${entry.path}: ${(error as NodeJS.ErrnoException).code ?? "error"}`);
    }
    let next: Promise<{ buffer: Buffer; data: Buffer }> | undefined;
    try {
      if (listed) assertListed(listed.entry, await handle.stat(), SENDING);
      const hash = listed ? createHash("sha256") : undefined;
      let remaining = entry.size;
      // Each chunk is read into a buffer of its own, never reused: once sent, it is the transport's.
      const readChunk = async (): Promise<{ buffer: Buffer; data: Buffer }> => {
        const size = Math.min(DATA_CHUNK, remaining);
        const buffer = Buffer.allocUnsafe(FRAME_HEADROOM + size);
        const { bytesRead } = await handle.read(buffer, FRAME_HEADROOM, size, null);
        // A file that shrank since it was listed (and hashed): refuse rather than send other bytes.
        if (bytesRead === 0) {
          if (listed) throw sizeChanged(listed.entry, entry.size - remaining, SENDING);
          throw new GrpcStatusError(GrpcStatus.INTERNAL, `${entry.path} changed while it was sent (shrank)`);
        }
        remaining -= bytesRead;
        const data = buffer.subarray(FRAME_HEADROOM, FRAME_HEADROOM + bytesRead);
        hash?.update(data);
        return { buffer, data };
      };
      // The next chunk is read while the current one is being sent: the disk and the wire overlap.
      next = remaining > 0 ? readChunk() : undefined;
      while (next && !signal.aborted) {
        const { buffer, data } = await next;
        next = remaining > 0 ? readChunk() : undefined;
        next?.catch(() => undefined); // awaited on the next turn (or dropped when the send fails)
        // The last bytes go only once the whole file is the one hashed for the content tag.
        if (remaining === 0 && listed) await assertAsHashed(listed, handle, hash!);
        await send({ framed: frameDataPacketInPlace(id, buffer, FRAME_HEADROOM + data.length), id, data });
        sent(data.length);
      }
    } finally {
      // Never close the file under a read still in flight (a failed or cancelled send).
      await next?.catch(() => undefined);
      await handle.close();
    }
  }
  await send(encodePacket(PACKET_DATA, { id }));
}

const SENDING = "while sending it to BuildKit";

/** Nothing more to read, and the sha256 of what was read is the pinned one. */
async function assertAsHashed(listed: NonNullable<SourceEntry["listed"]>, handle: FileHandle, hash: Hash): Promise<void> {
  const probe = await handle.read(Buffer.alloc(1), 0, 1, null);
  if (probe.bytesRead > 0) throw sourceChanged(listed.entry, `it grew beyond the ${listed.entry.size} bytes it had when listed`, SENDING);
  if (!hash.digest().equals(listed.digest)) throw sourceChanged(listed.entry, "its content is not the one hashed for the content tag", SENDING);
}
