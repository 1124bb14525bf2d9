// The ssh connection behind an ssh:// DOCKER_HOST (session/sshDialStdio.ts): a real ssh2 server on
// loopback (@kiln/test-utils' startSshDockerHost in front of the machine's Docker Engine, or a
// misbehaving one of the test's own). A connection that closes without an error, or an exec the
// server never answers, must fail with DaemonUnavailableError within a deadline — not hang.
import net from "node:net";
import type { Duplex } from "node:stream";
import { DaemonUnavailableError } from "@kiln/core";
import { startSshDockerHost } from "@kiln/test-utils";
// ssh2 is CommonJS: Node's ESM loader does not see `Server`/`utils` as named exports.
import ssh2 from "ssh2";

const { Server, utils } = ssh2;
import { describe, expect, it } from "vitest";
import { dialStdio, type SshEngineOptions } from "../src/session/sshDialStdio.js";

/** dialStdio's outcome, or "no answer" after `deadlineMs`. */
function dial(options: SshEngineOptions, deadlineMs: number): Promise<{ error: Error | null; stream?: Duplex } | "no answer"> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve("no answer"), deadlineMs);
    dialStdio(options, (error, stream) => {
      clearTimeout(timer);
      resolve({ error, ...(stream ? { stream } : {}) });
    });
  });
}

async function listen(server: net.Server | InstanceType<typeof Server>): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return (server.address() as net.AddressInfo).port;
}

describe("dial-stdio over ssh", () => {
  it("through the test ssh host: the channel is the engine's API socket", async () => {
    const host = await startSshDockerHost();
    try {
      const port = new URL(host.dockerHost).port;
      const result = await dial({ host: "127.0.0.1", port, username: "kiln" }, 15_000);
      expect(result).not.toBe("no answer");
      const { error, stream } = result as { error: Error | null; stream: Duplex };
      expect(error).toBeNull();
      const answer = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("no answer to /_ping within 15 s")), 15_000);
        stream.once("data", (chunk: Buffer) => {
          clearTimeout(timer);
          resolve(chunk.toString("latin1"));
        });
        stream.write("GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n");
      });
      expect(answer.split("\r\n", 1)[0]).toBe("HTTP/1.1 200 OK");
      expect(host.requests).toContain("GET /_ping HTTP/1.1");
      stream.destroy();
    } finally {
      await host.stop();
    }
  });

  it("a server that closes after its banner, without an error: DaemonUnavailableError, not a hang", async () => {
    const sockets = new Set<net.Socket>();
    const server = net.createServer((socket) => {
      sockets.add(socket);
      socket.on("error", () => undefined);
      socket.end("SSH-2.0-OpenSSH_9.2\r\n");
    });
    const port = await listen(server);
    try {
      const result = await dial({ host: "127.0.0.1", port, username: "kiln" }, 5_000);
      expect(result).not.toBe("no answer");
      const { error } = result as { error: Error };
      expect(DaemonUnavailableError.isInstance(error)).toBe(true);
      expect(error.message).toContain(`ssh://127.0.0.1:${port}`);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("a server that never answers the exec: DaemonUnavailableError after the connect timeout", async () => {
    const clients = new Set<{ end(): unknown }>();
    const server = new Server({ hostKeys: [utils.generateKeyPairSync("ed25519").private] }, (client) => {
      clients.add(client);
      client.on("error", () => undefined);
      client.on("authentication", (ctx) => ctx.accept());
      client.on("ready", () => client.on("session", (accept) => accept().on("exec", () => undefined)));
    });
    const port = await listen(server);
    try {
      const result = await dial({ host: "127.0.0.1", port, username: "kiln", sshOptions: { readyTimeout: 500 } }, 5_000);
      expect(result).not.toBe("no answer");
      const { error } = result as { error: Error };
      expect(DaemonUnavailableError.isInstance(error)).toBe(true);
      expect(error.message).toContain("did not start within 500 ms");
    } finally {
      for (const client of clients) client.end();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
