// The ssh connection behind an ssh:// DOCKER_HOST (session/sshDialStdio.ts): a real ssh2 server on
// loopback (@kiln/test-utils' startSshDockerHost in front of the machine's Docker Engine, or a
// misbehaving one of the test's own). A connection that closes without an error, or an exec the
// server never answers, must fail with DaemonUnavailableError within a deadline — not hang.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { DaemonUnavailableError } from "@kiln/core";
import { startSshDockerHost } from "@kiln/test-utils";
// ssh2 is CommonJS: Node's ESM loader does not see `Server` as a named export.
import ssh2 from "ssh2";

const { Server } = ssh2;
import { describe, expect, it } from "vitest";
import { dialStdio, type SshEngineOptions } from "../src/session/sshDialStdio.js";
import { SshHostKeyMismatchError, SshHostKeyUnknownError } from "../src/session/sshHostKeyErrors.js";
import { resolveSshHostKeyPolicy } from "../src/session/sshHostKeys.js";
import { generateTestKeyPair } from "@kiln/test-utils";

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
    const host = await startSshDockerHost({ hostKey: generateTestKeyPair("ed25519").private });
    try {
      const port = new URL(host.dockerHost).port;
      const hostKeys = resolveSshHostKeyPolicy({ KILN_SSH_KNOWN_HOSTS: host.knownHostsFile });
      const result = await dial({ host: "127.0.0.1", port, username: "kiln", hostKeys }, 15_000);
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
    const hostKey = generateTestKeyPair("ed25519");
    const server = new Server({ hostKeys: [hostKey.private] }, (client) => {
      clients.add(client);
      client.on("error", () => undefined);
      client.on("authentication", (ctx) => ctx.accept());
      client.on("ready", () => client.on("session", (accept) => accept().on("exec", () => undefined)));
    });
    const port = await listen(server);
    const dir = await mkdtemp(join(tmpdir(), "kiln-known-hosts-"));
    try {
      await writeFile(join(dir, "known_hosts"), `[127.0.0.1]:${port} ${hostKey.public}\n`);
      const hostKeys = resolveSshHostKeyPolicy({ KILN_SSH_KNOWN_HOSTS: join(dir, "known_hosts") });
      const result = await dial({ host: "127.0.0.1", port, username: "kiln", hostKeys, sshOptions: { readyTimeout: 500 } }, 5_000);
      expect(result).not.toBe("no answer");
      const { error } = result as { error: Error };
      expect(DaemonUnavailableError.isInstance(error)).toBe(true);
      expect(error.message).toContain("did not start within 500 ms");
    } finally {
      for (const client of clients) client.end();
      await new Promise((resolve) => server.close(resolve));
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("a host with an ed25519 and an RSA key, only RSA on file: Kiln asks for the RSA key (a different RSA key on file is a mismatch)", async () => {
    const ed25519 = generateTestKeyPair("ed25519");
    const rsa = generateTestKeyPair("rsa");
    const clients = new Set<{ end(): unknown }>();
    const server = new Server({ hostKeys: [ed25519.private, rsa.private] }, (client) => {
      clients.add(client);
      client.on("error", () => undefined);
      client.on("authentication", (ctx) => ctx.accept());
      client.on("ready", () => client.on("session", (accept) => accept().on("exec", (acceptExec) => acceptExec())));
    });
    const port = await listen(server);
    const dir = await mkdtemp(join(tmpdir(), "kiln-known-hosts-"));
    try {
      const policy = async (line: string) => {
        await writeFile(join(dir, "known_hosts"), `${line}\n`);
        return resolveSshHostKeyPolicy({ KILN_SSH_KNOWN_HOSTS: join(dir, "known_hosts") });
      };
      const known = await dial({ host: "127.0.0.1", port, username: "kiln", hostKeys: await policy(`[127.0.0.1]:${port} ${rsa.public}`) }, 10_000);
      expect(known).not.toBe("no answer");
      expect((known as { error: Error | null }).error).toBeNull();
      (known as { stream: Duplex }).stream.destroy();
      const other = generateTestKeyPair("rsa").public;
      const changed = await dial({ host: "127.0.0.1", port, username: "kiln", hostKeys: await policy(`[127.0.0.1]:${port} ${other}`) }, 10_000);
      expect(changed).not.toBe("no answer");
      expect(SshHostKeyMismatchError.isInstance((changed as { error: Error }).error)).toBe(true);
    } finally {
      for (const client of clients) client.end();
      await new Promise((resolve) => server.close(resolve));
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("KILN_SSH_STRICT_HOST_KEY_CHECKING=no: a host whose ed25519 key is on file presenting only an RSA key is refused; nothing is exec'd", async () => {
    const onFile = generateTestKeyPair("ed25519");
    // The man-in-the-middle: only an RSA key, so the ed25519 Kiln asks for first cannot be negotiated.
    const impostor = generateTestKeyPair("rsa");
    const clients = new Set<{ end(): unknown }>();
    const execs: string[] = [];
    let authenticated = 0;
    const server = new Server({ hostKeys: [impostor.private] }, (client) => {
      clients.add(client);
      client.on("error", () => undefined);
      client.on("authentication", (ctx) => {
        authenticated++;
        ctx.accept();
      });
      client.on("ready", () =>
        client.on("session", (accept) =>
          accept().on("exec", (acceptExec, _reject, info) => {
            execs.push(info.command);
            acceptExec();
          }),
        ),
      );
    });
    const port = await listen(server);
    const dir = await mkdtemp(join(tmpdir(), "kiln-known-hosts-"));
    try {
      await writeFile(join(dir, "known_hosts"), `[127.0.0.1]:${port} ${onFile.public}\n`);
      const hostKeys = resolveSshHostKeyPolicy({ KILN_SSH_KNOWN_HOSTS: join(dir, "known_hosts"), KILN_SSH_STRICT_HOST_KEY_CHECKING: "no" });
      const result = await dial({ host: "127.0.0.1", port, username: "kiln", hostKeys }, 10_000);
      expect(result).not.toBe("no answer");
      const { error, stream } = result as { error: Error | null; stream?: Duplex };
      stream?.destroy();
      expect(SshHostKeyUnknownError.isInstance(error), String(error)).toBe(true);
      expect(error?.message).toContain("known_hosts has ED25519 keys for this host, but not the RSA key it sent");
      expect(authenticated).toBe(0);
      expect(execs).toEqual([]);
    } finally {
      for (const client of clients) client.end();
      await new Promise((resolve) => server.close(resolve));
      await rm(dir, { recursive: true, force: true });
    }
  });
});
