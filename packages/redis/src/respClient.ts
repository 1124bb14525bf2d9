/**
 * A small Redis client (RESP2 over one TCP or TLS socket) — all Kiln needs: a handful of commands,
 * AUTH/SELECT/CLIENT SETNAME on connect, deadlines, and a socket that never keeps a process alive.
 *
 * Why not ioredis: `kiln plan` is a short process, and loading ioredis (62 modules) cost more CPU
 * than the registry checks the cache saves (bench/RESULTS.md). This file loads only `node:net`
 * (and `node:tls` for rediss://). Sentinel and Cluster stay possible by passing a client of your own.
 *
 *  - Commands issued in the same tick go out in one write (pipelining: 8 concurrent lookups cost one
 *    round trip, not eight).
 *  - Connecting (with the handshake) has its deadline, every command has its own. A deadline that
 *    passes while the reply already waits in the socket (a process starved of CPU wakes up late)
 *    does not count: the check runs after pending I/O is read.
 *  - A failed or timed-out connection rejects everything in flight; the next command connects again
 *    (no reconnect timer). The socket is referenced only while a command is in flight.
 */
import net from "node:net";
import type { ResolvedTls } from "./settings.js";

export interface RespClientOptions {
  host: string;
  port: number;
  db: number;
  username?: string;
  password?: string;
  tls?: ResolvedTls;
  connectTimeoutMs: number;
  commandTimeoutMs: number;
  /** CLIENT SETNAME, so operators see who is connected. */
  connectionName?: string;
}

/** An error reply of the server (`-ERR …`, `-NOPERM …`, `-WRONGPASS …`). */
export class RedisReplyError extends Error {
  override name = "RedisReplyError";
}

export type Reply = string | number | null | Reply[] | RedisReplyError;
type Arg = string | number;

interface Pending {
  resolve: (reply: Reply) => void;
  reject: (error: Error) => void;
  timer?: ReturnType<typeof setTimeout>;
}

const CRLF = "\r\n";

/** Encodes one command as a RESP array of bulk strings. */
function encode(args: readonly Arg[]): string {
  let out = `*${args.length}${CRLF}`;
  for (const arg of args) {
    const text = String(arg);
    out += `$${Buffer.byteLength(text)}${CRLF}${text}${CRLF}`;
  }
  return out;
}

/** Parses one reply at `offset`; undefined when the buffer does not hold all of it yet. */
function parse(buffer: Buffer, offset: number): { reply: Reply; next: number } | undefined {
  const end = buffer.indexOf(CRLF, offset);
  if (end < 0) return undefined;
  const type = buffer[offset];
  const line = buffer.toString("utf8", offset + 1, end);
  switch (type) {
    case 0x2b: // +
      return { reply: line, next: end + 2 };
    case 0x2d: // -
      return { reply: new RedisReplyError(line), next: end + 2 };
    case 0x3a: // :
      return { reply: Number(line), next: end + 2 };
    case 0x24: {
      // $
      const length = Number(line);
      if (length < 0) return { reply: null, next: end + 2 };
      if (buffer.length < end + 2 + length + 2) return undefined;
      return { reply: buffer.toString("utf8", end + 2, end + 2 + length), next: end + 2 + length + 2 };
    }
    case 0x2a: {
      // *
      const count = Number(line);
      if (count < 0) return { reply: null, next: end + 2 };
      const items: Reply[] = [];
      let next = end + 2;
      for (let i = 0; i < count; i++) {
        const item = parse(buffer, next);
        if (!item) return undefined;
        items.push(item.reply);
        next = item.next;
      }
      return { reply: items, next };
    }
    default:
      throw new Error(`Redis protocol error: unexpected reply type ${JSON.stringify(String.fromCharCode(type ?? 0))}`);
  }
}

export class RespClient {
  private socket: net.Socket | undefined;
  private connecting: Promise<net.Socket> | undefined;
  /** Replies are matched to commands in order. */
  private readonly pending: Pending[] = [];
  private buffer: Buffer = Buffer.alloc(0);
  /** Commands of this tick, written together. */
  private queued = "";
  private flushScheduled = false;

  constructor(private readonly options: RespClientOptions) {}

  /** Sends one command; resolves with its reply, rejects with a RedisReplyError or a connection error. */
  async command(...args: Arg[]): Promise<Reply> {
    const reused = this.socket !== undefined && !this.connecting;
    const socket = await this.connect();
    try {
      return await this.send(socket, args, this.options.commandTimeoutMs);
    } catch (error) {
      // An idle connection the server closed meanwhile (a restart, its idle timeout) is noticed only
      // now: one fresh connection is tried. Error replies and deadlines are final.
      if (!reused || error instanceof RedisReplyError || (error as Error).message.startsWith("Command timed out")) throw error;
      return this.send(await this.connect(), args, this.options.commandTimeoutMs);
    }
  }

  /** Ends the connection; a later command connects again. */
  async close(): Promise<void> {
    const socket = this.socket;
    this.fail(new Error("Connection is closed"));
    socket?.end();
  }

  private send(socket: net.Socket, args: readonly Arg[], timeoutMs: number): Promise<Reply> {
    return new Promise<Reply>((resolve, reject) => {
      const entry: Pending = {
        resolve: (reply) => (reply instanceof RedisReplyError ? reject(reply) : resolve(reply)),
        reject,
      };
      entry.timer = setTimeout(() => {
        // A reply that already arrived is read first (poll phase), then this decides.
        setImmediate(() => {
          if (!this.pending.includes(entry)) return;
          // Replies come in order: the connection cannot be trusted any more.
          this.drop(socket, new Error(`Command timed out after ${timeoutMs} ms`));
        });
      }, timeoutMs);
      this.pending.push(entry);
      socket.ref();
      this.queued += encode(args);
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        process.nextTick(() => {
          this.flushScheduled = false;
          const data = this.queued;
          this.queued = "";
          if (data && this.socket === socket && !socket.destroyed) socket.write(data);
        });
      }
    });
  }

  /** The connected, authenticated socket — connecting (once for all callers) when there is none. */
  private connect(): Promise<net.Socket> {
    if (this.connecting) return this.connecting; // the socket exists already, but is not authenticated yet
    if (this.socket && !this.socket.destroyed) return Promise.resolve(this.socket);
    this.connecting = this.open().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async open(): Promise<net.Socket> {
    const { host, port, tls, connectTimeoutMs } = this.options;
    const socket: net.Socket = tls ? (await import("node:tls")).connect({ host, port, ...tls }) : net.connect({ host, port });
    socket.setNoDelay(true);
    this.buffer = Buffer.alloc(0);
    this.socket = socket;
    socket.on("data", (chunk: Buffer) => this.receive(socket, chunk));
    socket.on("error", (error) => this.drop(socket, error));
    socket.on("end", () => this.drop(socket, new Error("Connection is closed by the server")));
    socket.on("close", () => this.drop(socket, new Error("Connection is closed")));
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => setImmediate(() => reject(new Error(`connect ETIMEDOUT ${host}:${port} (after ${connectTimeoutMs} ms)`))),
        connectTimeoutMs,
      );
      const done = (error?: Error) => {
        clearTimeout(timer);
        socket.off("error", done);
        socket.off("close", closedEarly);
        if (error) reject(error);
        else resolve();
      };
      const closedEarly = () => done(new Error("Connection is closed"));
      socket.once(tls ? "secureConnect" : "connect", () => done());
      socket.once("error", done);
      socket.once("close", closedEarly);
    });
    try {
      await ready;
      // The handshake in one write; every reply is checked (a wrong password fails here, by name).
      const { username, password, db, connectionName } = this.options;
      const steps: Arg[][] = [];
      if (password !== undefined) steps.push(username ? ["AUTH", username, password] : ["AUTH", password]);
      if (db !== 0) steps.push(["SELECT", db]);
      if (connectionName) steps.push(["CLIENT", "SETNAME", connectionName]);
      await Promise.all(steps.map((step) => this.send(socket, step, connectTimeoutMs)));
    } catch (error) {
      this.drop(socket, error as Error);
      throw error;
    }
    if (this.pending.length === 0) socket.unref();
    return socket;
  }

  private receive(socket: net.Socket, chunk: Buffer): void {
    if (socket !== this.socket) return;
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    let offset = 0;
    try {
      for (;;) {
        const parsed = parse(this.buffer, offset);
        if (!parsed) break;
        offset = parsed.next;
        const entry = this.pending.shift();
        if (!entry) throw new Error("Redis protocol error: a reply nobody asked for");
        clearTimeout(entry.timer);
        entry.resolve(parsed.reply);
      }
    } catch (error) {
      this.drop(socket, error as Error);
      return;
    }
    this.buffer = offset === this.buffer.length ? Buffer.alloc(0) : this.buffer.subarray(offset);
    if (this.pending.length === 0) socket.unref();
  }

  /** The socket is done for: everything in flight fails with `error`; the next command reconnects. */
  private drop(socket: net.Socket, error: Error): void {
    if (socket !== this.socket) return;
    this.socket = undefined;
    socket.destroy();
    this.fail(error);
  }

  private fail(error: Error): void {
    this.socket = undefined;
    this.queued = "";
    for (const entry of this.pending.splice(0)) {
      clearTimeout(entry.timer);
      entry.reject(error);
    }
  }
}
