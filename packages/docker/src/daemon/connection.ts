/**
 * Where the Docker Engine is and how to talk to it, from the same environment variables the docker
 * CLI reads: DOCKER_HOST (unix://, tcp://, ssh://, npipe://), DOCKER_TLS_VERIFY / DOCKER_TLS and
 * DOCKER_CERT_PATH (default ~/.docker). Resolved here, explicitly, rather than by docker-modem's
 * own defaults so that `tcp://` without TLS stays plain HTTP and a missing cert file is a clear error.
 */
import { readFileSync } from "node:fs";
import type { Agent } from "node:http";
import { homedir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "@kiln/core";
import type Docker from "dockerode";
import type { SshEngineOptions } from "../session/sshDialStdio.js";
import { SshEngineAgent } from "../session/sshEngineAgent.js";
import { resolveSshHostKeyPolicy } from "../session/sshHostKeys.js";

export const DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock";

export interface DockerConnection {
  /** Options for `new Docker(...)`. */
  options: Docker.DockerOptions;
  /** Where the engine is, for messages (never includes credentials). */
  endpoint: string;
  kind: "unix" | "npipe" | "tcp" | "tls" | "ssh";
}

export function resolveDockerConnection(env: NodeJS.ProcessEnv = process.env): DockerConnection {
  const connection = resolveFromEnv(env);
  return { ...connection, options: withoutModemDefaults(connection.options) };
}

/**
 * docker-modem merges its own defaults — read from *process.env* DOCKER_HOST / DOCKER_CERT_PATH /
 * DOCKER_PATH_PREFIX / DOCKER_CLIENT_TIMEOUT — under the options it is given. Every key those
 * defaults can set is therefore given explicitly (undefined when unused), so the environment Kiln
 * was handed is the only one that counts.
 */
const MODEM_DEFAULT_KEYS = ["socketPath", "host", "port", "protocol", "username", "pathPrefix", "ca", "cert", "key", "timeout"] as const;

function withoutModemDefaults(options: Docker.DockerOptions): Docker.DockerOptions {
  const explicit: Record<string, unknown> = Object.fromEntries(MODEM_DEFAULT_KEYS.map((key) => [key, undefined]));
  return { ...explicit, ...options } as Docker.DockerOptions;
}

function resolveFromEnv(env: NodeJS.ProcessEnv): DockerConnection {
  const host = env.DOCKER_HOST?.trim();
  if (!host) return { options: { socketPath: DEFAULT_DOCKER_SOCKET }, endpoint: `unix://${DEFAULT_DOCKER_SOCKET}`, kind: "unix" };
  if (host.startsWith("unix://")) {
    const socketPath = host.slice("unix://".length) || DEFAULT_DOCKER_SOCKET;
    return { options: { socketPath }, endpoint: `unix://${socketPath}`, kind: "unix" };
  }
  if (host.startsWith("npipe://")) {
    const socketPath = host.slice("npipe://".length) || "//./pipe/docker_engine";
    return { options: { socketPath }, endpoint: host, kind: "npipe" };
  }
  let url: URL;
  try {
    url = new URL(host.includes("://") ? host : `tcp://${host}`);
  } catch {
    throw invalidHost(host);
  }
  if (url.protocol === "ssh:") {
    const port = url.port || "22";
    const ssh: SshEngineOptions = {
      // URL keeps an IPv6 address's brackets; ssh and known_hosts want the bare address.
      host: url.hostname.replace(/^\[(.*)\]$/, "$1"),
      port,
      ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
      ...(env.SSH_AUTH_SOCK ? { sshOptions: { agent: env.SSH_AUTH_SOCK } } : {}),
      hostKeys: resolveSshHostKeyPolicy(env),
    };
    // Plain HTTP over an agent whose connections are dial-stdio channels (host key checked), never
    // docker-modem's own `protocol: "ssh"` transport, which checks no host key (sshEngineAgent.ts).
    const options: Docker.DockerOptions & SshEngineOptions & { agent: Agent } = { ...ssh, protocol: "http", agent: new SshEngineAgent(ssh) };
    return { options, endpoint: `ssh://${url.username ? `${url.username}@` : ""}${url.hostname}:${port}`, kind: "ssh" };
  }
  if (url.protocol !== "tcp:" && url.protocol !== "http:" && url.protocol !== "https:") throw invalidHost(host);
  if (!url.hostname) throw invalidHost(host);
  // The docker CLI: any non-empty DOCKER_TLS_VERIFY means TLS with verification; DOCKER_TLS=1 TLS without.
  const verify = Boolean(env.DOCKER_TLS_VERIFY);
  const tls = verify || Boolean(env.DOCKER_TLS) || url.protocol === "https:";
  const port = url.port || (tls ? "2376" : "2375");
  if (!tls) return { options: { protocol: "http", host: url.hostname, port }, endpoint: `tcp://${url.hostname}:${port}`, kind: "tcp" };
  const certPath = env.DOCKER_CERT_PATH || join(homedir(), ".docker");
  const options: Docker.DockerOptions & { checkServerIdentity?: () => undefined } = {
    protocol: "https",
    host: url.hostname,
    port,
    ca: readCert(certPath, "ca.pem", verify),
    cert: readCert(certPath, "cert.pem", false),
    key: readCert(certPath, "key.pem", false),
  };
  if (!verify) options.checkServerIdentity = () => undefined;
  return { options, endpoint: `tcp://${url.hostname}:${port} (TLS${verify ? ", verified" : ""})`, kind: "tls" };
}

function readCert(dir: string, file: string, required: boolean): Buffer | undefined {
  try {
    return readFileSync(join(dir, file));
  } catch (error) {
    if (!required && (error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new ConfigError(`Cannot read ${file} from DOCKER_CERT_PATH ${JSON.stringify(dir)}: ${(error as Error).message}`, {
      hint: "DOCKER_TLS_VERIFY=1 needs ca.pem, cert.pem and key.pem in DOCKER_CERT_PATH (default ~/.docker); point it at the engine's client certificates.",
      details: { field: "DOCKER_CERT_PATH", value: dir },
    });
  }
}

function invalidHost(host: string): ConfigError {
  return new ConfigError(`Invalid DOCKER_HOST ${JSON.stringify(host)}`, {
    hint: "Use unix:///var/run/docker.sock, tcp://host:2375, tcp://host:2376 with DOCKER_TLS_VERIFY=1, or ssh://user@host.",
    details: { field: "DOCKER_HOST", value: host },
  });
}
