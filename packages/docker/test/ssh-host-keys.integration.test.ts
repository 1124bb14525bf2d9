// An ssh:// DOCKER_HOST checks the host's key against known_hosts, as the system ssh the docker CLI
// runs does (session/sshHostKeys.ts). The host is @kiln/test-utils' startSshDockerHost (ssh2's SSH
// server on loopback, with a key made for the run) in front of the machine's Docker Engine; every
// request goes through Kiln's own connection (DockerDaemon → SshEngineAgent → dialStdio). OpenSSH's
// tools are the oracles: ssh-keygen for fingerprints and hashed names, ssh-keyscan for the hint.
import { exec } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { KilnError } from "@kiln/core";
import { startSshDockerHost, type SshDockerHost } from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveDockerConnection } from "../src/daemon/connection.js";
import { DockerDaemon } from "../src/daemon/daemon.js";
import { upgradeToH2c } from "../src/session/engineUpgrade.js";
import { SshHostKeyMismatchError, SshHostKeyRevokedError, SshHostKeyUnknownError } from "../src/session/sshHostKeyErrors.js";
import { generateTestKeyPair } from "@kiln/test-utils";

// Async: the ssh server runs in this process, so a blocking child would stall it.
const run = promisify(exec);

let ssh: SshDockerHost;
let port: string;
let dir: string;
let localVersion: string;

beforeAll(async () => {
  ssh = await startSshDockerHost({ hostKey: generateTestKeyPair("ed25519").private });
  port = new URL(ssh.dockerHost).port;
  dir = await mkdtemp(join(tmpdir(), "kiln-ssh-host-keys-"));
  // What the engine answers on its own socket: the same engine must answer through ssh.
  localVersion = (await (await DockerDaemon.fromEnv({ ...process.env, DOCKER_HOST: "" }).docker()).version()).Version;
});

afterAll(async () => {
  await ssh?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

let files = 0;
async function knownHosts(text: string): Promise<string> {
  const file = join(dir, `known_hosts_${++files}`);
  await writeFile(file, text);
  return file;
}

/** A daemon over the test ssh host, checking keys against `file` only. */
function daemon(file: string, extra: NodeJS.ProcessEnv = {}): DockerDaemon {
  return DockerDaemon.fromEnv({ ...process.env, DOCKER_HOST: ssh.dockerHost, KILN_SSH_KNOWN_HOSTS: file, KILN_SSH_STRICT_HOST_KEY_CHECKING: "", ...extra });
}

/** `docker version` through the daemon (its ping and version calls, each an ssh connection). */
async function versionVia(d: DockerDaemon): Promise<string> {
  await d.describe();
  return (await (await d.docker()).version()).Version;
}

async function refusal(d: DockerDaemon): Promise<KilnError> {
  const error = await d.describe().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(KilnError.isInstance(error), String(error)).toBe(true);
  return error as KilnError;
}

/** The fingerprint ssh-keygen prints for the host's key. */
async function fingerprintOfHost(): Promise<string> {
  const file = await knownHosts(`${ssh.knownHostsLine}\n`);
  return (await run(`ssh-keygen -l -E sha256 -f ${file}`, { timeout: 10_000 })).stdout.split(/\s+/)[1] as string;
}

function otherKey(type: "ed25519" | "rsa" = "ed25519"): string {
  const pair = generateTestKeyPair(type);
  return pair.public.split(" ").slice(0, 2).join(" ");
}

/** The BuildKit session's own connection (`POST /session`, upgraded to h2c) over the test ssh host: what it failed with. */
async function sessionRefusal(file: string, extra: NodeJS.ProcessEnv = {}): Promise<unknown> {
  const connection = resolveDockerConnection({
    ...process.env,
    DOCKER_HOST: ssh.dockerHost,
    KILN_SSH_KNOWN_HOSTS: file,
    KILN_SSH_STRICT_HOST_KEY_CHECKING: "",
    ...extra,
  });
  const stream = await upgradeToH2c(
    connection,
    { path: "/session", timeoutMs: 15_000 },
    {
      refused: (status, reason) => new Error(`engine refused the upgrade: ${status} ${reason}`),
      timedOut: () => new Error("no answer within 15 s"),
      failed: (error) => error,
      cancelled: (error) => error,
    },
  ).then(
    (upgraded) => upgraded,
    (error: unknown) => ({ error }),
  );
  if ("error" in stream) return stream.error;
  stream.destroy();
  return undefined;
}

describe("ssh:// DOCKER_HOST host keys", () => {
  it("the host's key on file as [127.0.0.1]:port: `docker version` goes through ssh; another key on file is refused", async () => {
    const file = await knownHosts(`${ssh.knownHostsLine}\n`);
    const before = ssh.requests.length;
    expect(await versionVia(daemon(file))).toBe(localVersion);
    expect(ssh.requests.slice(before)).toEqual(expect.arrayContaining(["GET /_ping HTTP/1.1", expect.stringMatching(/^GET \/(v[\d.]+\/)?version HTTP\/1.1$/)]));
    // The same file, now with another key for that name: the next connection is refused.
    await writeFile(file, `[127.0.0.1]:${port} ${otherKey()}\n`);
    const count = ssh.requests.length;
    expect(SshHostKeyMismatchError.isInstance(await refusal(daemon(file)))).toBe(true);
    expect(ssh.requests.length).toBe(count);
  });

  it("an unknown host: SshHostKeyUnknownError with ssh-keygen's fingerprint and an ssh-keyscan hint that, run as given, makes it known", async () => {
    const file = await knownHosts("");
    const before = ssh.requests.length;
    const error = await refusal(daemon(file));
    expect(SshHostKeyUnknownError.isInstance(error)).toBe(true);
    const fingerprint = await fingerprintOfHost();
    expect(error.message).toContain(`ED25519 key fingerprint is ${fingerprint}`);
    expect(error.details).toMatchObject({ fingerprint, host: `[127.0.0.1]:${port}` });
    const add = `ssh-keyscan -p ${port} 127.0.0.1 >> ${file}`;
    expect(error.hint).toContain(add);
    // Nothing reached the engine.
    expect(ssh.requests.length).toBe(before);
    // The check the hint asks for prints that fingerprint; the command it gives adds the key.
    const check = /`(ssh-keyscan [^`]*\| ssh-keygen -lf -)`/.exec(error.hint ?? "")?.[1];
    expect(check).toBeDefined();
    expect((await run(check as string, { timeout: 20_000 })).stdout).toContain(fingerprint);
    await run(add, { timeout: 20_000 });
    expect(await readFile(file, "utf8")).toContain(ssh.knownHostsLine.split(" ")[2]);
    expect(await versionVia(daemon(file))).toBe(localVersion);
  });

  it("a changed key: SshHostKeyMismatchError (possible man-in-the-middle), never connected — with KILN_SSH_STRICT_HOST_KEY_CHECKING=no too", async () => {
    const file = await knownHosts(`# old key\n[127.0.0.1]:${port} ${otherKey()}\n`);
    const before = ssh.requests.length;
    for (const strict of ["yes", "no"]) {
      const error = await refusal(daemon(file, { KILN_SSH_STRICT_HOST_KEY_CHECKING: strict }));
      expect(SshHostKeyMismatchError.isInstance(error), strict).toBe(true);
      expect(error.message).toContain("man-in-the-middle");
      expect(error.message).toContain(`${file}:2`);
      expect(error.message).toContain(await fingerprintOfHost());
      expect(error.hint).toContain(`ssh-keygen -R '[127.0.0.1]:${port}' -f ${file}`);
    }
    expect(ssh.requests.length).toBe(before);
  });

  it("a hashed entry (ssh-keygen -H) works; a hashed entry for another port does not", async () => {
    const hashed = await knownHosts(`${ssh.knownHostsLine}\n`);
    const otherPort = await knownHosts(`[127.0.0.1]:${Number(port) + 1} ${ssh.publicKey}\n`);
    for (const file of [hashed, otherPort]) await run(`ssh-keygen -H -f ${file}`, { timeout: 10_000 });
    expect(await readFile(hashed, "utf8")).toMatch(/^\|1\|/);
    expect(await readFile(hashed, "utf8")).not.toContain("127.0.0.1");
    expect(await versionVia(daemon(hashed))).toBe(localVersion);
    expect(SshHostKeyUnknownError.isInstance(await refusal(daemon(otherPort)))).toBe(true);
  });

  it("the port counts: an entry for 127.0.0.1 (port 22) does not vouch for 127.0.0.1 on another port", async () => {
    const plain = await knownHosts(`127.0.0.1 ${ssh.publicKey}\n`);
    expect(SshHostKeyUnknownError.isInstance(await refusal(daemon(plain)))).toBe(true);
    const listed = await knownHosts(`build.example,[127.0.0.1]:${port},10.1.2.3 ${ssh.publicKey}\n`);
    expect(await versionVia(daemon(listed))).toBe(localVersion);
  });

  it("@revoked: the host's key is refused even though a plain line also holds it", async () => {
    const file = await knownHosts(`${ssh.knownHostsLine}\n@revoked [127.0.0.1]:${port} ${ssh.publicKey}\n`);
    const before = ssh.requests.length;
    const error = await refusal(daemon(file));
    expect(SshHostKeyRevokedError.isInstance(error)).toBe(true);
    expect(error.message).toContain(`${file}:2`);
    expect(ssh.requests.length).toBe(before);
  });

  it("KILN_SSH_STRICT_HOST_KEY_CHECKING=no: an unknown host is reached, with one warning naming it", async () => {
    const file = await knownHosts("");
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on("warning", onWarning);
    try {
      // Several connections (ping and version, twice): one warning.
      for (let i = 0; i < 2; i++) expect(await versionVia(daemon(file, { KILN_SSH_STRICT_HOST_KEY_CHECKING: "no" }))).toBe(localVersion);
      // Warnings are emitted on the next tick.
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off("warning", onWarning);
    }
    const ours = warnings.filter((warning) => (warning as { code?: string }).code === "KILN_SSH_HOST_KEY_UNCHECKED");
    expect(ours).toHaveLength(1);
    expect(ours[0]?.message).toContain(`ssh://127.0.0.1:${port}`);
    expect(ours[0]?.message).toContain(await fingerprintOfHost());
    // Without the setting, the same host is refused.
    expect(SshHostKeyUnknownError.isInstance(await refusal(daemon(file)))).toBe(true);
  });

  it("KILN_SSH_STRICT_HOST_KEY_CHECKING=no does not let a key of another type through: only an RSA key on file, the host presents its ED25519 key → refused, never connected", async () => {
    // As a man-in-the-middle would: the host has keys on file, but of another type than it presents.
    const file = await knownHosts(`[127.0.0.1]:${port} ${otherKey("rsa")}\n`);
    const before = ssh.requests.length;
    for (const strict of ["yes", "no"]) {
      const error = await refusal(daemon(file, { KILN_SSH_STRICT_HOST_KEY_CHECKING: strict }));
      expect(SshHostKeyUnknownError.isInstance(error), strict).toBe(true);
      expect(error.message).toContain("known_hosts has RSA keys for this host, but not the ED25519 key it sent");
      expect(error.message).toContain(await fingerprintOfHost());
    }
    expect(ssh.requests.length).toBe(before);
  });

  it("the BuildKit session's connection (POST /session over ssh) refuses an unknown host, and a key of another type with =no; the known key goes through", async () => {
    const before = ssh.requests.length;
    const unknown = await sessionRefusal(await knownHosts(""));
    expect(SshHostKeyUnknownError.isInstance(unknown), String(unknown)).toBe(true);
    const otherType = await sessionRefusal(await knownHosts(`[127.0.0.1]:${port} ${otherKey("rsa")}\n`), { KILN_SSH_STRICT_HOST_KEY_CHECKING: "no" });
    expect(SshHostKeyUnknownError.isInstance(otherType), String(otherType)).toBe(true);
    const changed = await sessionRefusal(await knownHosts(`[127.0.0.1]:${port} ${otherKey()}\n`), { KILN_SSH_STRICT_HOST_KEY_CHECKING: "no" });
    expect(SshHostKeyMismatchError.isInstance(changed), String(changed)).toBe(true);
    expect(ssh.requests.length).toBe(before);
    // The same path with the host's key on file reaches the engine's /session.
    expect(await sessionRefusal(ssh.knownHostsFile)).toBeUndefined();
    expect(ssh.requests.slice(before)).toEqual(["POST /session HTTP/1.1"]);
  });
});
