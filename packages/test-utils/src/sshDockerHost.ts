/**
 * An ssh:// DOCKER_HOST on loopback for tests: an SSH server (ssh2's, with a host key made for the
 * run) that accepts the user it is given without credentials and, like a remote build host, answers
 * `docker system dial-stdio` by joining the channel to the machine's Docker socket. Every other
 * command is refused. It records the first request line of each dial-stdio channel (`POST /session
 * HTTP/1.1`, `GET /_ping HTTP/1.1`…), so a test can tell which Engine API calls went through ssh.
 */
import net from "node:net";
// ssh2 is CommonJS: Node's ESM loader does not see `Server`/`utils` as named exports (tsx, plain node).
import ssh2, { type Connection } from "ssh2";

const { Server, utils } = ssh2;

export interface SshDockerHost {
  /** `ssh://<user>@127.0.0.1:<port>` */
  dockerHost: string;
  /** The first request line of each dial-stdio channel, in order. */
  requests: string[];
  stop(): Promise<void>;
}

export async function startSshDockerHost(options: { user?: string; dockerSocket?: string } = {}): Promise<SshDockerHost> {
  const user = options.user ?? "kiln";
  const dockerSocket = options.dockerSocket ?? "/var/run/docker.sock";
  const requests: string[] = [];
  const clients = new Set<Connection>();
  const server = new Server({ hostKeys: [utils.generateKeyPairSync("ed25519").private] }, (client) => {
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
  return {
    dockerHost: `ssh://${user}@127.0.0.1:${port}`,
    requests,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const client of clients) client.end();
        server.close(() => resolve());
      }),
  };
}
