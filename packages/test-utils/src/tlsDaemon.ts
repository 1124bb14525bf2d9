/**
 * A second Docker daemon for tests of remote, TLS-secured engines: `dockerd` listening only on a
 * loopback TCP port with `--tlsverify`, certificates made with openssl for this run (a CA, a server
 * cert for 127.0.0.1, a client cert), its own data/exec roots and pidfile, its own bridge and no
 * iptables changes so it cannot disturb the machine's main daemon. `stop()` shuts it down and removes
 * it all.
 *
 * Why not `--bridge=none`: a dockerd started with it deletes the `docker0` interface on start
 * (moby's removeDefaultBridgeInterface), cutting the main daemon's containers off the network.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, writeFile } from "node:fs/promises";
import https from "node:https";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "./registry.js";
import { createBridge, removeSandbox, run, sandboxDaemonArgs } from "./sandboxDaemon.js";

export interface TlsDaemon {
  /** `tcp://127.0.0.1:<port>` */
  host: string;
  port: number;
  /** Holds ca.pem, cert.pem, key.pem — what DOCKER_CERT_PATH expects. */
  certPath: string;
  /** DOCKER_HOST / DOCKER_TLS_VERIFY / DOCKER_CERT_PATH for a client of this daemon. */
  env: Record<string, string>;
  /** The daemon's own log (for diagnosing a failed start). */
  log(): string;
  stop(): Promise<void>;
}

export async function startTlsDaemon(): Promise<TlsDaemon> {
  const root = await mkdtemp("/var/tmp/kiln-tls-dockerd-");
  const certs = join(root, "certs");
  const clientCerts = join(root, "client");
  await run("mkdir", ["-p", certs, clientCerts, join(root, "data"), join(root, "exec")]);
  await makeCertificates(certs, clientCerts);

  const port = await freePort();
  // A bridge of its own (name ≤ 15 chars), in a private /24 picked from the port.
  const bridge = `kilntls${port}`;
  const subnet = `10.254.${port % 250}.1/24`;
  await createBridge(bridge, subnet);
  let output = "";
  const child: ChildProcess = spawn(
    "dockerd",
    [
      `--host=tcp://127.0.0.1:${port}`,
      "--tlsverify",
      `--tlscacert=${join(certs, "ca.pem")}`,
      `--tlscert=${join(certs, "server-cert.pem")}`,
      `--tlskey=${join(certs, "server-key.pem")}`,
      ...sandboxDaemonArgs(root, bridge),
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
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
      const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
      await exitedPromise;
      clearTimeout(timer);
    }
    // dockerd unmounts its layers on a clean shutdown; removeSandbox unmounts anything left.
    await removeSandbox(root, bridge);
  };

  const tls = { ca: readFileSync(join(clientCerts, "ca.pem")), cert: readFileSync(join(clientCerts, "cert.pem")), key: readFileSync(join(clientCerts, "key.pem")) };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited) {
      await stop();
      throw new Error(`The TLS dockerd exited during start:\n${output}`);
    }
    if (await ping(port, tls)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`The TLS dockerd did not answer within 60 s:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  const host = `tcp://127.0.0.1:${port}`;
  return {
    host,
    port,
    certPath: clientCerts,
    env: { DOCKER_HOST: host, DOCKER_TLS_VERIFY: "1", DOCKER_CERT_PATH: clientCerts },
    log: () => output,
    stop,
  };
}

function ping(port: number, tls: { ca: Buffer; cert: Buffer; key: Buffer }): Promise<boolean> {
  return new Promise((resolve) => {
    const req = https.get({ host: "127.0.0.1", port, path: "/_ping", ...tls, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("error", () => resolve(false));
    req.on("timeout", () => req.destroy());
  });
}

/** A throw-away CA, a server certificate for 127.0.0.1/localhost and a client certificate. */
async function makeCertificates(serverDir: string, clientDir: string): Promise<void> {
  const ssl = (args: string[]) => run("openssl", args, serverDir);
  await ssl(["genrsa", "-out", "ca-key.pem", "2048"]);
  await ssl(["req", "-new", "-x509", "-days", "2", "-key", "ca-key.pem", "-subj", "/CN=kiln-test-ca", "-out", "ca.pem"]);
  await ssl(["genrsa", "-out", "server-key.pem", "2048"]);
  await ssl(["req", "-new", "-key", "server-key.pem", "-subj", "/CN=localhost", "-out", "server.csr"]);
  await writeFile(join(serverDir, "server-ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  await ssl(["x509", "-req", "-days", "2", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial", "-out", "server-cert.pem", "-extfile", "server-ext.cnf"]);
  await ssl(["genrsa", "-out", join(clientDir, "key.pem"), "2048"]);
  await ssl(["req", "-new", "-key", join(clientDir, "key.pem"), "-subj", "/CN=kiln-test-client", "-out", "client.csr"]);
  await writeFile(join(serverDir, "client-ext.cnf"), "extendedKeyUsage=clientAuth\n");
  await ssl(["x509", "-req", "-days", "2", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial", "-out", join(clientDir, "cert.pem"), "-extfile", "client-ext.cnf"]);
  await run("cp", [join(serverDir, "ca.pem"), join(clientDir, "ca.pem")]);
}


