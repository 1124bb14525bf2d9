/**
 * Throw-away TLS material for tests of mTLS daemons (the TLS dockerd, standalone buildkitd), made with
 * openssl for one run: a CA, a server certificate for 127.0.0.1 / localhost, and a client certificate.
 * The server's files go to `serverDir` (ca.pem, server-cert.pem, server-key.pem); the client's to
 * `clientDir` as DOCKER_CERT_PATH expects them (ca.pem, cert.pem, key.pem).
 */
import { copyFile, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "./sandboxDaemon.js";

export interface TestCertificates {
  ca: string;
  serverCert: string;
  serverKey: string;
  /** The client's own copy of the CA, certificate and key (DOCKER_CERT_PATH layout). */
  client: { dir: string; ca: string; cert: string; key: string };
}

export async function makeTestCertificates(serverDir: string, clientDir: string, options: { caName?: string } = {}): Promise<TestCertificates> {
  await mkdir(serverDir, { recursive: true });
  await mkdir(clientDir, { recursive: true });
  const ssl = (args: string[]) => run("openssl", args, serverDir);
  const client = { dir: clientDir, ca: join(clientDir, "ca.pem"), cert: join(clientDir, "cert.pem"), key: join(clientDir, "key.pem") };
  await ssl(["genrsa", "-out", "ca-key.pem", "2048"]);
  await ssl(["req", "-new", "-x509", "-days", "2", "-key", "ca-key.pem", "-subj", `/CN=${options.caName ?? "kiln-test-ca"}`, "-out", "ca.pem"]);
  await ssl(["genrsa", "-out", "server-key.pem", "2048"]);
  await ssl(["req", "-new", "-key", "server-key.pem", "-subj", "/CN=localhost", "-out", "server.csr"]);
  await writeFile(join(serverDir, "server-ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  await ssl([
    "x509",
    "-req",
    "-days",
    "2",
    "-in",
    "server.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca-key.pem",
    "-CAcreateserial",
    "-out",
    "server-cert.pem",
    "-extfile",
    "server-ext.cnf",
  ]);
  await ssl(["genrsa", "-out", client.key, "2048"]);
  await ssl(["req", "-new", "-key", client.key, "-subj", "/CN=kiln-test-client", "-out", "client.csr"]);
  await writeFile(join(serverDir, "client-ext.cnf"), "extendedKeyUsage=clientAuth\n");
  await ssl([
    "x509",
    "-req",
    "-days",
    "2",
    "-in",
    "client.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca-key.pem",
    "-CAcreateserial",
    "-out",
    client.cert,
    "-extfile",
    "client-ext.cnf",
  ]);
  await copyFile(join(serverDir, "ca.pem"), client.ca);
  return { ca: join(serverDir, "ca.pem"), serverCert: join(serverDir, "server-cert.pem"), serverKey: join(serverDir, "server-key.pem"), client };
}
