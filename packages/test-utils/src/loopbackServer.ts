// Listening on a free loopback port and stopping without waiting on keep-alive or stalled sockets:
// what every fault proxy needs, so a test's `stop()` never hangs on a connection it dripped.
import type http from "node:http";
import type { AddressInfo, Socket } from "node:net";

export interface LoopbackServer {
  host: string;
  url: string;
  /** Clears the timers, destroys every open socket and closes the server. */
  stop(): Promise<void>;
}

export async function listenOnLoopback(server: http.Server, timers: Set<NodeJS.Timeout> = new Set()): Promise<LoopbackServer> {
  const sockets = new Set<Socket>();
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    async stop() {
      for (const timer of timers) clearTimeout(timer);
      for (const socket of sockets) socket.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
