// Pure logic: DOCKER_HOST resolution, the X-Registry-Auth header, per-platform tags and the OCI index.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AuthError, ConfigError, OCI_INDEX, registerCredentialProvider, resolveRegistryCredentials, scrubSecrets } from "@kiln/core";
import { describe, expect, it } from "vitest";
import { hasRegistryHost } from "../src/checkers.js";
import { resolveDockerConnection } from "../src/daemon/connection.js";
import { SshEngineAgent } from "../src/session/sshEngineAgent.js";
import { assembleIndex, platformTag } from "../src/push/multiPlatform.js";
import { encodeRegistryAuth } from "../src/push/registryAuth.js";

describe("resolveDockerConnection", () => {
  it("defaults to the local socket", () => {
    expect(resolveDockerConnection({})).toMatchObject({ kind: "unix", options: { socketPath: "/var/run/docker.sock" } });
    expect(resolveDockerConnection({ DOCKER_HOST: "unix:///tmp/d.sock" }).options).toEqual({ socketPath: "/tmp/d.sock" });
  });
  it("uses plain HTTP for tcp:// without TLS variables", () => {
    expect(resolveDockerConnection({ DOCKER_HOST: "tcp://10.0.0.5:2375" })).toMatchObject({
      kind: "tcp",
      options: { protocol: "http", host: "10.0.0.5", port: "2375" },
    });
  });
  it("reads ca/cert/key from DOCKER_CERT_PATH with DOCKER_TLS_VERIFY", () => {
    const dir = mkdtempSync(join(tmpdir(), "kiln-certs-"));
    for (const f of ["ca.pem", "cert.pem", "key.pem"]) writeFileSync(join(dir, f), `${f}-content`);
    const c = resolveDockerConnection({ DOCKER_HOST: "tcp://127.0.0.1:2376", DOCKER_TLS_VERIFY: "1", DOCKER_CERT_PATH: dir });
    expect(c.kind).toBe("tls");
    expect(c.options).toMatchObject({ protocol: "https", host: "127.0.0.1", port: "2376" });
    expect(String(c.options.ca)).toBe("ca.pem-content");
    expect(String(c.options.key)).toBe("key.pem-content");
  });
  it("names DOCKER_CERT_PATH when the CA is missing", () => {
    const dir = mkdtempSync(join(tmpdir(), "kiln-nocerts-"));
    expect(() => resolveDockerConnection({ DOCKER_HOST: "tcp://h:2376", DOCKER_TLS_VERIFY: "1", DOCKER_CERT_PATH: dir })).toThrow(ConfigError);
  });
  it("parses ssh:// hosts with user and port; requests go through Kiln's host-key-checked dial-stdio agent", () => {
    expect(resolveDockerConnection({ DOCKER_HOST: "ssh://builder@build.example:2222" })).toMatchObject({
      kind: "ssh",
      // Plain HTTP over SshEngineAgent, never docker-modem's own ssh transport (no host key check).
      options: { protocol: "http", host: "build.example", port: "2222", username: "builder", agent: expect.any(SshEngineAgent) },
    });
  });
  it("rejects an unknown scheme with a ConfigError naming DOCKER_HOST", () => {
    try {
      resolveDockerConnection({ DOCKER_HOST: "ftp://x" });
      expect.unreachable();
    } catch (error) {
      expect(ConfigError.isInstance(error)).toBe(true);
      expect((error as ConfigError).details).toMatchObject({ field: "DOCKER_HOST" });
    }
  });
});

describe("X-Registry-Auth", () => {
  const decode = (h: string) => {
    // Padded URL-safe base64, as Go's base64.URLEncoding (the daemon) requires.
    expect(h.length % 4).toBe(0);
    expect(h).not.toMatch(/[+/]/);
    return JSON.parse(Buffer.from(h, "base64url").toString());
  };
  it("is {} for anonymous pushes (the daemon needs the header anyway)", () => {
    const auth = encodeRegistryAuth("127.0.0.1:5000", undefined);
    expect(decode(auth.header)).toEqual({});
    expect(auth.secrets).toEqual([auth.header]);
  });
  it("carries username/password for the registry host (not the namespace)", () => {
    const auth = encodeRegistryAuth("ghcr.io/acme", { username: "u", password: "s3cret-pw" });
    expect(decode(auth.header)).toEqual({ username: "u", password: "s3cret-pw", serveraddress: "ghcr.io" });
    expect(scrubSecrets(`login with s3cret-pw failed (${auth.header})`, auth.secrets)).toBe("login with *** failed (***)");
  });
  it("passes identity tokens as identitytoken", () => {
    expect(decode(encodeRegistryAuth("r.example", { identityToken: "tok-123" }).header)).toEqual({ identitytoken: "tok-123", serveraddress: "r.example" });
  });
});

describe("core's resolveRegistryCredentials (the lookup the X-Registry-Auth header is built from)", () => {
  const host = "creds.example:5000";
  function dockerConfigDir(): string {
    const dir = mkdtempSync(join(tmpdir(), "kiln-docker-config-"));
    writeFileSync(join(dir, "config.json"), JSON.stringify({ auths: { [host]: { auth: Buffer.from("from-config:pw-config").toString("base64") } } }));
    return dir;
  }

  it("explicit credentials, then credential providers, then the Docker config", async () => {
    const env = { DOCKER_CONFIG: dockerConfigDir() };
    expect(await resolveRegistryCredentials(host, { env })).toMatchObject({ username: "from-config" });
    const remove = registerCredentialProvider({
      name: "kiln-docker-order-test",
      matches: (h) => h === host,
      getCredentials: () => ({ username: "from-provider", password: "pw-provider" }),
    });
    try {
      expect(await resolveRegistryCredentials(host, { env })).toMatchObject({ username: "from-provider" });
      expect(await resolveRegistryCredentials(host, { env, credentials: { [host]: { username: "explicit", password: "pw" } } })).toMatchObject({
        username: "explicit",
      });
    } finally {
      remove();
    }
  });

  it("a provider that throws is an AuthError naming it", async () => {
    const remove = registerCredentialProvider({
      name: "kiln-docker-throwing",
      matches: (h) => h === host,
      getCredentials: () => Promise.reject(new Error("boom")),
    });
    try {
      const error = await resolveRegistryCredentials(host, { env: { DOCKER_CONFIG: "/nonexistent" } }).catch((e) => e);
      expect(AuthError.isInstance(error)).toBe(true);
      expect(error.details).toMatchObject({ provider: "kiln-docker-throwing", registry: host });
    } finally {
      remove();
    }
  });
});

describe("multi-platform helpers", () => {
  it("makes per-platform tags within 128 characters", () => {
    expect(platformTag("abc", "linux/arm64")).toBe("abc-linux-arm64");
    expect(platformTag("x".repeat(128), "linux/amd64")).toHaveLength(128);
  });
  it("assembles an OCI index listing each platform's manifest", () => {
    const index = assembleIndex([
      ["linux/amd64", { digest: "sha256:" + "a".repeat(64), size: 10, mediaType: "application/vnd.docker.distribution.manifest.v2+json" }],
      ["linux/arm64", { digest: "sha256:" + "b".repeat(64), size: 11, mediaType: "application/vnd.docker.distribution.manifest.v2+json" }],
    ]);
    const doc = JSON.parse(index.body.toString());
    expect(doc.mediaType).toBe(OCI_INDEX);
    expect(doc.manifests.map((m: { platform: unknown }) => m.platform)).toEqual([
      { architecture: "amd64", os: "linux" },
      { architecture: "arm64", os: "linux" },
    ]);
    expect(doc.manifests.map((m: { digest: string; size: number }) => [m.digest.slice(7, 8), m.size])).toEqual([
      ["a", 10],
      ["b", 11],
    ]);
  });
  it("tells registry repositories from local names", () => {
    expect(hasRegistryHost("127.0.0.1:5000/app")).toBe(true);
    expect(hasRegistryHost("ghcr.io/acme/app")).toBe(true);
    expect(hasRegistryHost("localhost/app")).toBe(true);
    expect(hasRegistryHost("acme/app")).toBe(false);
    expect(hasRegistryHost("app")).toBe(false);
  });
});
