/**
 * A real Redis for tests: Debian's `redis-server` (7.x) on a free loopback port, its own temp
 * directory, no persistence. Optionally behind a password (`requirepass`), an ACL user limited to a
 * key prefix, and TLS only (`--port 0 --tls-port …` with a CA and server certificate made by openssl
 * for this run). `stop()` shuts it down and removes it; `kill()` stops it the hard way mid-test;
 * `start()` brings it back on the same port (empty: no persistence).
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import { readFileSync } from "node:fs";
import { promisify } from "node:util";
import { freePort } from "./registry.js";
import { makeTestCertificates } from "./testCertificates.js";

const run = promisify(execFile);
const REDIS_SERVER = "/usr/bin/redis-server";

export interface StartRedisOptions {
  /** `requirepass`: the default user needs this password. */
  password?: string;
  /** An ACL user allowed only keys under `keyPattern` (e.g. `kiln:*`); the default user is then disabled. */
  aclUser?: { username: string; password: string; keyPattern: string };
  /** TLS only: no plain port. */
  tls?: boolean;
}

export interface TestRedis {
  port: number;
  /** `redis://` (or `rediss://` with TLS) URL with the credentials, for KILN_REDIS_URL. */
  url: string;
  /** The same URL without credentials. */
  address: string;
  /** TLS: the CA that signed the server certificate (for KILN_REDIS_TLS_CA_FILE). */
  caFile?: string;
  /** Runs `redis-cli` against it (authenticated, over TLS when it is TLS-only) and returns stdout. */
  cli(...args: string[]): Promise<string>;
  /** True while the server process runs. */
  running(): boolean;
  /** SIGKILL: the server vanishes mid-whatever (connections reset). */
  kill(): Promise<void>;
  /** Starts it again on the same port (after kill or stop), empty. */
  start(): Promise<void>;
  /** Stops it and removes its directory. */
  stop(): Promise<void>;
}

export async function startRedis(options: StartRedisOptions = {}): Promise<TestRedis> {
  if (!(await exists(REDIS_SERVER))) {
    throw new Error(`${REDIS_SERVER} is missing: install Debian's redis-server (scripts/start-services.sh does)`);
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-redis-"));
  const port = await freePort();
  const caFile = options.tls ? await makeCertificates(dir) : undefined;
  const args = [
    "--bind",
    "127.0.0.1",
    "--dir",
    dir,
    "--save",
    "",
    "--appendonly",
    "no",
    "--daemonize",
    "no",
    "--logfile",
    path.join(dir, "redis.log"),
    "--protected-mode",
    "no",
    "--maxclients",
    "4096",
  ];
  if (options.tls) {
    args.push(
      "--port",
      "0",
      "--tls-port",
      String(port),
      "--tls-cert-file",
      path.join(dir, "server-cert.pem"),
      "--tls-key-file",
      path.join(dir, "server-key.pem"),
      "--tls-ca-cert-file",
      caFile!,
      "--tls-auth-clients",
      "no",
    );
  } else {
    args.push("--port", String(port));
  }
  if (options.password) args.push("--requirepass", options.password);
  if (options.aclUser) {
    const { username, password, keyPattern } = options.aclUser;
    await writeFile(path.join(dir, "users.acl"), `user default off\nuser ${username} on >${password} ~${keyPattern} &* +@all\n`);
    args.push("--aclfile", path.join(dir, "users.acl"));
  }
  const scheme = options.tls ? "rediss" : "redis";
  const auth = options.aclUser
    ? `${encodeURIComponent(options.aclUser.username)}:${encodeURIComponent(options.aclUser.password)}@`
    : options.password
      ? `:${encodeURIComponent(options.password)}@`
      : "";
  const address = `${scheme}://127.0.0.1:${port}`;

  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const start = async () => {
    const proc = spawn(REDIS_SERVER, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    proc.stderr?.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    child = proc;
    exited = new Promise((resolve) => proc.once("exit", () => resolve()));
    const deadline = Date.now() + 15_000;
    while (!(await answers(port, caFile))) {
      if (proc.exitCode !== null || proc.signalCode !== null || Date.now() > deadline) {
        proc.kill("SIGKILL");
        const log = await readLog(dir);
        throw new Error(`redis-server did not start on 127.0.0.1:${port}:\n${stderr}\n${log}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const isRunning = () => child !== undefined && child.exitCode === null && child.signalCode === null;
  const kill = async () => {
    if (!isRunning()) return;
    child!.kill("SIGKILL");
    await exited;
  };
  await start();

  const cliArgs = [
    "-h",
    "127.0.0.1",
    "-p",
    String(port),
    "--no-auth-warning",
    ...(options.tls ? ["--tls", "--cacert", caFile!] : []),
    ...(options.aclUser ? ["--user", options.aclUser.username, "--pass", options.aclUser.password] : options.password ? ["-a", options.password] : []),
  ];
  return {
    port,
    url: `${scheme}://${auth}127.0.0.1:${port}`,
    address,
    ...(caFile ? { caFile } : {}),
    cli: async (...command: string[]) => (await run("redis-cli", [...cliArgs, ...command], { timeout: 10_000 })).stdout,
    running: isRunning,
    kill,
    start: async () => {
      if (!isRunning()) await start();
    },
    stop: async () => {
      if (isRunning()) {
        child!.kill("SIGTERM");
        const timer = setTimeout(() => child?.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function exists(file: string): Promise<boolean> {
  try {
    await run("test", ["-x", file]);
    return true;
  } catch {
    return false;
  }
}

async function readLog(dir: string): Promise<string> {
  try {
    return readFileSync(path.join(dir, "redis.log"), "utf8").slice(-4000);
  } catch {
    return "";
  }
}

/** Any reply to PING (PONG, or NOAUTH behind a password) means the server is up. */
function answers(port: number, caFile: string | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    const socket: net.Socket = caFile
      ? tls.connect({ host: "127.0.0.1", port, ca: readFileSync(caFile), servername: "localhost" })
      : net.connect({ host: "127.0.0.1", port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once(caFile ? "secureConnect" : "connect", () => socket.write("*1\r\n$4\r\nPING\r\n"));
    socket.once("data", () => done(true));
    socket.once("error", () => done(false));
  });
}

/** A throw-away CA and a server certificate for 127.0.0.1/localhost (testCertificates.ts); returns the CA's path. */
async function makeCertificates(dir: string): Promise<string> {
  return (await makeTestCertificates(dir, path.join(dir, "client"), { caName: "kiln-redis-test-ca" })).ca;
}
