/**
 * A standalone BuildKit daemon for tests: the binary KILN_TEST_BUILDKITD names (`.ci/run` points it at
 * ../shared/buildkit/buildkitd, BuildKit v0.11.6), started with its own root, on a unix socket and —
 * with `tls: true` — on a loopback tcp port with mTLS (testCertificates.ts: a CA, a server certificate
 * for 127.0.0.1 and a client certificate made with openssl for this run). The loopback registries it must reach over
 * plain HTTP are listed in its config (`[registry."127.0.0.1:<port>"] http = true`). Needs root and
 * `runc` (the OCI worker). `stop()` ends it and removes its root.
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { join } from "node:path";
import { spawnDaemon } from "./daemonProcess.js";
import { freePort } from "./registry.js";
import { makeTestCertificates } from "./testCertificates.js";

/** The buildkitd binary the standalone-BuildKit tests use, or undefined (they are skipped, saying why). */
export function testBuildkitdBinary(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const path = env.KILN_TEST_BUILDKITD;
  return path && existsSync(path) ? path : undefined;
}

/** Why the standalone-BuildKit tests do not run here (for `describe.skipIf` titles and messages). */
export const BUILDKITD_SKIP_REASON =
  "KILN_TEST_BUILDKITD is not set (or names no file): standalone buildkitd tests need it (.ci/run sets it to ../shared/buildkit/buildkitd)";

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
    const certs = await makeTestCertificates(join(root, "certs"), join(root, "client"), { caName: "kiln-test-buildkit-ca" });
    const port = await freePort();
    tcpAddress = `tcp://127.0.0.1:${port}`;
    addresses.push(tcpAddress);
    tlsFiles = { ca: certs.client.ca, cert: certs.client.cert, key: certs.client.key };
    tlsToml.push("  [grpc.tls]", `    cert = "${certs.serverCert}"`, `    key = "${certs.serverKey}"`, `    ca = "${certs.ca}"`);
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

  const daemon = spawnDaemon(binary, ["--config", configPath]);
  const stop = async () => {
    await daemon.terminate(15_000);
    await rm(root, { recursive: true, force: true }).catch(() => undefined);
  };
  await daemon.waitUntilReady({
    name: "buildkitd",
    waitingFor: "listen",
    ready: async () => existsSync(socket) && (await connects(socket)),
    timeoutMs: 30_000,
    intervalMs: 200,
    cleanup: stop,
  });
  return { unixAddress: `unix://${socket}`, ...(tcpAddress ? { tcpAddress, tlsFiles } : {}), root, log: daemon.log, stop };
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
