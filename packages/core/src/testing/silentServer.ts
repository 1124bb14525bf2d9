/**
 * A loopback TCP server that accepts connections and never answers: the "request in flight" of
 * the cancellation tests. It records which connections carried a request and when each closes, so
 * the suite can prove an aborted check really closed its socket and sent nothing more.
 */
import { EventEmitter } from "node:events";
import net from "node:net";

export interface SilentServer {
  /** `127.0.0.1:<port>` — a loopback registry host (spoken to over plain HTTP). */
  host: string;
  /** `http://127.0.0.1:<port>` */
  url: string;
  port: number;
  /** Connections that have sent at least one byte. */
  readonly requested: number;
  /** Requested connections still open. */
  readonly open: number;
  /** Resolves once a connection has sent a request; rejects after `ms`. */
  waitForRequest(ms: number): Promise<void>;
  /** Resolves once every requested connection has closed; rejects after `ms`. */
  waitUntilClosed(ms: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startSilentServer(): Promise<SilentServer> {
  const sockets = new Set<net.Socket>();
  const requested = new Set<net.Socket>();
  const changes = new EventEmitter();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => undefined);
    socket.once("data", () => {
      requested.add(socket);
      changes.emit("change");
    });
    socket.on("close", () => {
      sockets.delete(socket);
      changes.emit("change");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  const openRequested = () => [...requested].filter((socket) => sockets.has(socket)).length;
  const waitFor = (condition: () => boolean, ms: number, failure: () => string) =>
    new Promise<void>((resolve, reject) => {
      if (condition()) return resolve();
      const check = () => {
        if (!condition()) return;
        clearTimeout(timer);
        changes.off("change", check);
        resolve();
      };
      const timer = setTimeout(() => {
        changes.off("change", check);
        reject(new Error(failure()));
      }, ms);
      changes.on("change", check);
    });
  return {
    host: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    port,
    get requested() {
      return requested.size;
    },
    get open() {
      return openRequested();
    },
    waitForRequest: (ms) =>
      waitFor(
        () => requested.size > 0,
        ms,
        () => `no request reached the silent server within ${ms} ms`,
      ),
    waitUntilClosed: (ms) =>
      waitFor(
        () => openRequested() === 0,
        ms,
        () => `${openRequested()} connection(s) still open ${ms} ms after the abort`,
      ),
    async stop() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
