/**
 * A connection of its own to the Docker Engine behind an ssh:// DOCKER_HOST — for every Engine API
 * request (dockerode's, through sshEngineAgent.ts) and every HTTP upgrade (`/session`, `/grpc`): an
 * ssh connection running `docker system dial-stdio` on the remote host, whose stdin/stdout are the
 * engine's API socket, as the docker CLI does for ssh:// hosts (user, port, `SSH_AUTH_SOCK` agent).
 * The ssh connection ends with the channel.
 *
 * The host's key is checked against known_hosts before anything is sent (sshHostKeys.ts), as the
 * system `ssh` the docker CLI runs does: an unknown, changed or revoked key is a typed error and
 * the connection is dropped during key exchange.
 *
 * The channel is given the few `net.Socket` methods Node's HTTP client and the upgrade code call
 * (`setTimeout` with an idle timer, `setKeepAlive`, `setNoDelay`), so it can stand in for a socket.
 */
import { userInfo } from "node:os";
import type { Duplex } from "node:stream";
import { DaemonUnavailableError, type KilnError } from "@kiln/core";
// ssh2 is CommonJS: Node's ESM loader (tsx, plain node) does not see `Client` as a named export.
import ssh2, { type ClientChannel, type ConnectConfig } from "ssh2";
import type { KnownHostsEntry } from "./knownHosts.js";
import { loadKnownHosts, preferredHostKeyAlgorithms, refuseHostKey, resolveSshHostKeyPolicy, type SshHostKeyPolicy } from "./sshHostKeys.js";

const { Client } = ssh2;

/** The remote command that bridges stdio to the engine's socket (docker CLI connhelper). */
export const DIAL_STDIO_COMMAND = "docker system dial-stdio";

export interface SshEngineOptions {
  host: string;
  port?: string | number;
  username?: string;
  password?: string;
  sshOptions?: Partial<ConnectConfig>;
  /** How the host's key is checked; from the process environment when absent (resolveSshHostKeyPolicy). */
  hostKeys?: SshHostKeyPolicy;
}

/** ssh2's own default for `readyTimeout`; the exec of dial-stdio gets the same deadline. */
const DEFAULT_READY_TIMEOUT_MS = 20_000;

/** Opens the channel; `callback` as Node's `createConnection` takes it (error, or the stream). */
export function dialStdio(options: SshEngineOptions, callback: (error: Error | null, stream?: Duplex) => void): void {
  let policy: SshHostKeyPolicy;
  try {
    policy = options.hostKeys ?? resolveSshHostKeyPolicy(process.env);
  } catch (error) {
    return callback(error as Error);
  }
  // known_hosts is read for each connection, so an entry added since the last one counts.
  loadKnownHosts(policy).then(
    (entries) => connect(options, policy, entries, callback),
    (error: Error) => callback(error),
  );
}

function connect(
  options: SshEngineOptions,
  policy: SshHostKeyPolicy,
  entries: KnownHostsEntry[],
  callback: (error: Error | null, stream?: Duplex) => void,
): void {
  const client = new Client();
  const port = Number(options.port ?? 22);
  const endpoint = `ssh://${options.host}:${port}`;
  const unavailable = (reason: string, cause?: unknown) =>
    new DaemonUnavailableError(`Cannot reach the Docker daemon at ${endpoint}: ${reason}`, {
      hint: "Check that `ssh` to that host works and that `docker system dial-stdio` runs there, or unset DOCKER_HOST to use the local socket.",
      ...(cause !== undefined ? { cause } : {}),
      details: { endpoint },
    });
  let settled = false;
  let execTimer: NodeJS.Timeout | undefined;
  // Set when the host's key is refused: ssh2 then reports only "Host denied (verification failed)".
  let refusal: KilnError | undefined;
  const fail = (error: Error) => {
    clearTimeout(execTimer);
    client.end();
    if (settled) return;
    settled = true;
    callback(refusal ?? error);
  };
  client.once("ready", () => {
    const timeoutMs = options.sshOptions?.readyTimeout ?? DEFAULT_READY_TIMEOUT_MS;
    execTimer = setTimeout(() => fail(unavailable(`\`${DIAL_STDIO_COMMAND}\` did not start within ${timeoutMs} ms`)), timeoutMs);
    client.exec(DIAL_STDIO_COMMAND, (error, channel) => {
      clearTimeout(execTimer);
      if (error) return fail(error);
      if (settled) return channel.close();
      settled = true;
      channel.once("close", () => client.end());
      callback(null, asSocket(channel));
    });
  });
  client.on("error", fail);
  // A connection that ends without an error (closed after the ssh banner, or before exec answered).
  client.once("close", () => fail(unavailable("the ssh connection closed before the engine's stdio channel opened")));
  const algorithms = options.sshOptions?.algorithms?.serverHostKey ? undefined : preferredHostKeyAlgorithms(entries, options.host, port);
  try {
    client.connect({
      ...options.sshOptions,
      ...(algorithms ? { algorithms: { ...options.sshOptions?.algorithms, serverHostKey: algorithms } } : {}),
      // Always ours, whatever sshOptions says: the raw key blob the host presented (never a hash of
      // it), checked before authentication.
      hostHash: undefined,
      hostVerifier: (key: Buffer) => {
        refusal = refuseHostKey({ policy, entries, host: options.host, port, endpoint }, key);
        return refusal === undefined;
      },
      host: options.host,
      port,
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
