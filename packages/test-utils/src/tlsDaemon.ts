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
import { mkdtemp } from "node:fs/promises";
import https from "node:https";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { spawnDaemon } from "./daemonProcess.js";
import { freePort } from "./registry.js";
import { createBridge, removeSandbox, run, sandboxDaemonArgs } from "./sandboxDaemon.js";
import { makeTestCertificates } from "./testCertificates.js";

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
  const certificates = await makeTestCertificates(certs, clientCerts);

  const port = await freePort();
  // A bridge of its own (name ≤ 15 chars), in a private /24 picked from the port.
  const bridge = `kilntls${port}`;
  const subnet = `10.254.${port % 250}.1/24`;
  await createBridge(bridge, subnet);
  const daemon = spawnDaemon("dockerd", [
    `--host=tcp://127.0.0.1:${port}`,
    "--tlsverify",
    `--tlscacert=${certificates.ca}`,
    `--tlscert=${certificates.serverCert}`,
    `--tlskey=${certificates.serverKey}`,
    ...sandboxDaemonArgs(root, bridge),
  ]);
  const stop = async () => {
    await daemon.terminate(20_000);
    // dockerd unmounts its layers on a clean shutdown; removeSandbox unmounts anything left.
    await removeSandbox(root, bridge);
  };

  const tls = { ca: readFileSync(certificates.client.ca), cert: readFileSync(certificates.client.cert), key: readFileSync(certificates.client.key) };
  await daemon.waitUntilReady({
    name: "The TLS dockerd",
    waitingFor: "answer",
    ready: () => ping(port, tls),
    timeoutMs: 60_000,
    intervalMs: 300,
    cleanup: stop,
  });
  const host = `tcp://127.0.0.1:${port}`;
  return {
    host,
    port,
    certPath: clientCerts,
    env: { DOCKER_HOST: host, DOCKER_TLS_VERIFY: "1", DOCKER_CERT_PATH: clientCerts },
    log: daemon.log,
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
