/**
 * A connection of its own to the Docker Engine behind an ssh:// DOCKER_HOST, for an HTTP upgrade
 * (`/session`, `/grpc`): an ssh connection running `docker system dial-stdio` on the remote host,
 * whose stdin/stdout are the engine's API socket — what the docker CLI does for ssh:// hosts, and
 * what dockerode's modem does for every request (the same ssh2 client and the same options:
 * user, port, `SSH_AUTH_SOCK` agent). The ssh connection ends with the channel.
 *
 * The channel is given the few `net.Socket` methods Node's HTTP client and the upgrade code call
 * (`setTimeout` with an idle timer, `setKeepAlive`, `setNoDelay`), so it can stand in for a socket.
 */
import { userInfo } from "node:os";
import type { Duplex } from "node:stream";
import { Client, type ClientChannel, type ConnectConfig } from "ssh2";

/** The remote command that bridges stdio to the engine's socket (docker CLI connhelper). */
export const DIAL_STDIO_COMMAND = "docker system dial-stdio";

export interface SshEngineOptions {
  host: string;
  port?: string | number;
  username?: string;
  password?: string;
  sshOptions?: Partial<ConnectConfig>;
}

/** Opens the channel; `callback` as Node's `createConnection` takes it (error, or the stream). */
export function dialStdio(options: SshEngineOptions, callback: (error: Error | null, stream?: Duplex) => void): void {
  const client = new Client();
  let settled = false;
  const fail = (error: Error) => {
    client.end();
    if (settled) return;
    settled = true;
    callback(error);
  };
  client.once("ready", () => {
    client.exec(DIAL_STDIO_COMMAND, (error, channel) => {
      if (error) return fail(error);
      settled = true;
      channel.once("close", () => client.end());
      callback(null, asSocket(channel));
    });
  });
  client.on("error", fail);
  try {
    client.connect({
      ...options.sshOptions,
      host: options.host,
      port: Number(options.port ?? 22),
      // ssh's own default: the local user's name.
      username: options.username ?? userInfo().username,
      ...(options.password !== undefined ? { password: options.password } : {}),
    });
  } catch (error) {
    fail(error as Error);
  }
}

/** The socket methods Node's HTTP client and the upgrade code call, on an ssh channel. */
function asSocket(channel: ClientChannel): Duplex {
  let idleMs = 0;
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = idleMs > 0 ? setTimeout(() => channel.emit("timeout"), idleMs) : undefined;
    timer?.unref();
  };
  channel.on("data", () => idleMs > 0 && arm());
  channel.once("close", () => clearTimeout(timer));
  return Object.assign(channel, {
    setTimeout(ms: number, onTimeout?: () => void) {
      idleMs = ms;
      if (onTimeout) channel.once("timeout", onTimeout);
      arm();
      return channel;
    },
    setKeepAlive: () => channel,
    setNoDelay: () => channel,
  });
}
