/**
 * A standalone BuildKit daemon for tests: the binary KILN_TEST_BUILDKITD names (`.ci/run` points it at
 * ../shared/buildkit/buildkitd, BuildKit v0.11.6), started with its own root, on a unix socket and —
 * with `tls: true` — on a loopback tcp port with mTLS (a CA, a server certificate for 127.0.0.1 and a
 * client certificate made with openssl for this run). The loopback registries it must reach over
 * plain HTTP are listed in its config (`[registry."127.0.0.1:<port>"] http = true`). Needs root and
 * `runc` (the OCI worker). `stop()` ends it and removes its root.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { join } from "node:path";
import { freePort } from "./registry.js";

/** The buildkitd binary the standalone-BuildKit tests use, or undefined (they are skipped, saying why). */
export function testBuildkitdBinary(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const path = env.KILN_TEST_BUILDKITD;
  return path && existsSync(path) ? path : undefined;
}

/** Why the standalone-BuildKit tests do not run here (for `describe.skipIf` titles and messages). */
export const BUILDKITD_SKIP_REASON = "KILN_TEST_BUILDKITD is not set (or names no file): standalone buildkitd tests need it (.ci/run sets it to ../shared/buildkit/buildkitd)";

export interface StartBuildkitdOptions {
  /** Registry hosts (`127.0.0.1:5000`) reached over plain HTTP. */
  insecureRegistries?: string[];
  /** Also listen on tcp://127.0.0.1:<port> with mTLS. */
  tls?: boolean;
  binary?: string;
}

export interface TestBuildkitd {
  /** `unix:///…/buildkitd.sock` */
  unixAddress: string;
  /** `tcp://127.0.0.1:<port>` (mTLS), when started with `tls`. */
  tcpAddress?: string;
  /** Client-side PEM files for the tcp address: ca, cert, key (server name `localhost` or 127.0.0.1). */
  tlsFiles?: { ca: string; cert: string; key: string };
  root: string;
  log(): string;
  stop(): Promise<void>;
}

export async function startBuildkitd(options: StartBuildkitdOptions = {}): Promise<TestBuildkitd> {
  const binary = options.binary ?? testBuildkitdBinary();
  if (!binary) throw new Error(BUILDKITD_SKIP_REASON);
  const root = await mkdtemp("/var/tmp/kiln-buildkitd-");
  const socket = join(root, "buildkitd.sock");
  const addresses = [`unix://${socket}`];
  let tcpAddress: string | undefined;
  let tlsFiles: TestBuildkitd["tlsFiles"];
  const tlsToml: string[] = [];
  if (options.tls) {
    const certs = join(root, "certs");
    await mkdir(certs);
    await makeCertificates(certs);
    const port = await freePort();
    tcpAddress = `tcp://127.0.0.1:${port}`;
    addresses.push(tcpAddress);
    tlsFiles = { ca: join(certs, "ca.pem"), cert: join(certs, "client-cert.pem"), key: join(certs, "client-key.pem") };
    tlsToml.push("  [grpc.tls]", `    cert = "${join(certs, "server-cert.pem")}"`, `    key = "${join(certs, "server-key.pem")}"`, `    ca = "${join(certs, "ca.pem")}"`);
  }
  const config = [
    `root = "${join(root, "state")}"`,
    "[grpc]",
    `  address = [${addresses.map((a) => JSON.stringify(a)).join(", ")}]`,
    ...tlsToml,
    "[worker.oci]",
    "  enabled = true",
    "  gc = false",
    "[worker.containerd]",
    "  enabled = false",
    ...(options.insecureRegistries ?? []).flatMap((host) => [`[registry."${host}"]`, "  http = true", "  insecure = true"]),
    "",
  ].join("\n");
  const configPath = join(root, "buildkitd.toml");
  await writeFile(configPath, config);

  let output = "";
  const child: ChildProcess = spawn(binary, ["--config", configPath], { stdio: ["ignore", "pipe", "pipe"] });
  const collect = (d: Buffer) => {
    output = (output + d.toString()).slice(-20_000);
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  let exited = false;
  const exitedPromise = new Promise<void>((resolve) => child.once("exit", () => ((exited = true), resolve())));
  const stop = async () => {
    if (!exited) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exitedPromise;
      clearTimeout(timer);
    }
    await rm(root, { recursive: true, force: true }).catch(() => undefined);
  };

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited) {
      await stop();
      throw new Error(`buildkitd exited during start:\n${output}`);
    }
    if (existsSync(socket) && (await connects(socket))) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`buildkitd did not listen within 30 s:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { unixAddress: `unix://${socket}`, ...(tcpAddress ? { tcpAddress, tlsFiles } : {}), root, log: () => output, stop };
}

function connects(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(socketPath);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** A throw-away CA, a server certificate for 127.0.0.1/localhost and a client certificate. */
async function makeCertificates(dir: string): Promise<void> {
  const ssl = (args: string[]) => run("openssl", args, dir);
  await ssl(["genrsa", "-out", "ca-key.pem", "2048"]);
  await ssl(["req", "-new", "-x509", "-days", "2", "-key", "ca-key.pem", "-subj", "/CN=kiln-test-buildkit-ca", "-out", "ca.pem"]);
  await ssl(["genrsa", "-out", "server-key.pem", "2048"]);
  await ssl(["req", "-new", "-key", "server-key.pem", "-subj", "/CN=localhost", "-out", "server.csr"]);
  await writeFile(join(dir, "server-ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  await ssl(["x509", "-req", "-days", "2", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial", "-out", "server-cert.pem", "-extfile", "server-ext.cnf"]);
  await ssl(["genrsa", "-out", "client-key.pem", "2048"]);
  await ssl(["req", "-new", "-key", "client-key.pem", "-subj", "/CN=kiln-test-client", "-out", "client.csr"]);
  await writeFile(join(dir, "client-ext.cnf"), "extendedKeyUsage=clientAuth\n");
  await ssl(["x509", "-req", "-days", "2", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial", "-out", "client-cert.pem", "-extfile", "client-ext.cnf"]);
}

function run(command: string, args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`${command} ${args[0]} exited ${code}: ${err}`))));
  });
}
