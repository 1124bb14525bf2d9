/**
 * An ssh:// DOCKER_HOST on loopback for tests: an SSH server (ssh2's, with a host key made for the
 * run) that accepts the user it is given without credentials and, like a remote build host, answers
 * `docker system dial-stdio` by joining the channel to the machine's Docker socket. Every other
 * command is refused. It records the first request line of each dial-stdio channel (`POST /session
 * HTTP/1.1`, `GET /_ping HTTP/1.1`…), so a test can tell which Engine API calls went through ssh.
 * Kiln checks ssh host keys against known_hosts: the host writes a known_hosts file of its own with
 * its key, and `env` points Kiln at it (KILN_SSH_KNOWN_HOSTS) without touching ~/.ssh.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
// ssh2 is CommonJS: Node's ESM loader does not see `Server`/`utils` as named exports (tsx, plain node).
import ssh2, { type Connection } from "ssh2";
import { generateTestKeyPair } from "./sshTestKeys.js";

const { Server, utils } = ssh2;

export interface SshDockerHost {
  /** `ssh://<user>@127.0.0.1:<port>` */
  dockerHost: string;
  /** The first request line of each dial-stdio channel, in order. */
  requests: string[];
  /** The host's public key as OpenSSH writes it: `ssh-ed25519 AAAA…`. */
  publicKey: string;
  /** Its known_hosts line: `[127.0.0.1]:<port> ssh-ed25519 AAAA…`. */
  knownHostsLine: string;
  /** A known_hosts file holding just that line (removed by `stop`). */
  knownHostsFile: string;
  /** DOCKER_HOST and KILN_SSH_KNOWN_HOSTS for a Kiln builder's `env` (spread over process.env). */
  env: { DOCKER_HOST: string; KILN_SSH_KNOWN_HOSTS: string };
  stop(): Promise<void>;
}

export interface SshDockerHostOptions {
  user?: string;
  dockerSocket?: string;
  /** The host's private key (ssh2's generateKeyPairSync().private); a new well-formed ed25519 key by default (sshTestKeys.ts). */
  hostKey?: string;
}

export async function startSshDockerHost(options: SshDockerHostOptions = {}): Promise<SshDockerHost> {
  const user = options.user ?? "kiln";
  const dockerSocket = options.dockerSocket ?? "/var/run/docker.sock";
  const hostKey = options.hostKey ?? generateTestKeyPair("ed25519").private;
  const parsed = utils.parseKey(hostKey);
  if (parsed instanceof Error) throw parsed;
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  const publicKey = `${key.type} ${key.getPublicSSH().toString("base64")}`;
  const requests: string[] = [];
  const clients = new Set<Connection>();
  const server = new Server({ hostKeys: [hostKey] }, (client) => {
    clients.add(client);
    client.on("close", () => clients.delete(client));
    client.on("error", () => undefined);
    client.on("authentication", (ctx) => (ctx.username === user ? ctx.accept() : ctx.reject()));
    client.on("ready", () => {
      client.on("session", (acceptSession) => {
        const session = acceptSession();
        session.on("exec", (accept, reject, info) => {
          if (info.command !== "docker system dial-stdio") return reject?.();
          const channel = accept();
          const engine = net.connect(dockerSocket);
          let first = true;
          channel.on("data", (chunk: Buffer) => {
            if (first) requests.push(chunk.toString("latin1").split("\r\n", 1)[0] ?? "");
            first = false;
          });
          channel.pipe(engine).pipe(channel);
          const end = () => {
            engine.destroy();
            channel.close();
          };
          engine.on("error", end);
          engine.on("close", end);
          channel.on("close", () => engine.destroy());
        });
      });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;
  const dockerHost = `ssh://${user}@127.0.0.1:${port}`;
  const knownHostsLine = `[127.0.0.1]:${port} ${publicKey}`;
  const dir = await mkdtemp(join(tmpdir(), "kiln-ssh-host-"));
  const knownHostsFile = join(dir, "known_hosts");
  await writeFile(knownHostsFile, `${knownHostsLine}\n`);
  return {
    dockerHost,
    requests,
    publicKey,
    knownHostsLine,
    knownHostsFile,
    env: { DOCKER_HOST: dockerHost, KILN_SSH_KNOWN_HOSTS: knownHostsFile },
    stop: async () => {
      await new Promise<void>((resolve) => {
        for (const client of clients) client.end();
        server.close(() => resolve());
      });
      await rm(dir, { recursive: true, force: true });
    },
  };
}
