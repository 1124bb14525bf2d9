/**
 * A real OCI registry for tests: Debian's distribution 2.8 (`/usr/bin/docker-registry`) on a free
 * loopback port with a temp storage directory, open, behind htpasswd Basic auth (bcrypt entries
 * from `htpasswd -Bbn`), or behind Bearer tokens from the token-server fixture. Plus
 * `pushTestImage`, which uploads blobs and manifests straight through the registry API — no docker —
 * in every shape the checkers must read.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { startTokenServer, type TokenServer } from "./tokenServer.js";

export type RegistryAuthMode = "none" | "basic" | "bearer";

export interface StartRegistryOptions {
  auth?: RegistryAuthMode;
  username?: string;
  password?: string;
  /** Bearer mode: identity (refresh) tokens accepted for `username`. */
  identityTokens?: string[];
  /** Bearer mode: repositories anonymous users may pull. */
  publicRepositories?: string[];
  /** Bearer mode: token lifetime in seconds. */
  tokenExpiresIn?: number;
}

export interface TestRegistry {
  auth: RegistryAuthMode;
  /** `127.0.0.1:<port>` — what goes in an image reference. */
  host: string;
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** The account that may push and pull (undefined for an open registry). */
  credentials?: { username: string; password: string };
  tokenServer?: TokenServer;
  /** An Authorization header value with push+pull rights on `repository`. */
  authorizationFor(repository: string): string | undefined;
  stop(): Promise<void>;
}

const REGISTRY_BINARY = "/usr/bin/docker-registry";

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export async function startRegistry(options: StartRegistryOptions = {}): Promise<TestRegistry> {
  const auth = options.auth ?? "none";
  const username = options.username ?? "kiln";
  const password = options.password ?? `pw-${randomBytes(9).toString("hex")}`;
  const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-registry-"));
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  let tokenServer: TokenServer | undefined;
  let authYaml = "";

  if (auth === "basic") {
    const line = execFileSync("htpasswd", ["-Bbn", username, password], { encoding: "utf8" }).trim();
    await writeFile(path.join(dir, "htpasswd"), `${line}\n`);
    authYaml = `auth:\n  htpasswd:\n    realm: kiln-test\n    path: ${path.join(dir, "htpasswd")}\n`;
  } else if (auth === "bearer") {
    tokenServer = await startTokenServer({
      users: { [username]: password },
      identityTokens: Object.fromEntries((options.identityTokens ?? []).map((t) => [t, username])),
      publicRepositories: options.publicRepositories,
      expiresIn: options.tokenExpiresIn,
    });
    authYaml =
      `auth:\n  token:\n    realm: ${tokenServer.realm}\n    service: ${tokenServer.service}\n` +
      `    issuer: ${tokenServer.issuer}\n    rootcertbundle: ${tokenServer.certPath}\n`;
  }
  const config =
    `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n` +
    `storage:\n  filesystem:\n    rootdirectory: ${path.join(dir, "data")}\n  delete:\n    enabled: true\n` +
    `  maintenance:\n    uploadpurging:\n      enabled: false\n` +
    `http:\n  addr: ${host}\n  secret: ${randomBytes(16).toString("hex")}\n` +
    authYaml;
  const configPath = path.join(dir, "config.yml");
  await writeFile(configPath, config);

  const child = spawn(REGISTRY_BINARY, ["serve", configPath], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const cleanup = async () => {
    await stopChild(child);
    await tokenServer?.stop();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitForRegistry(`http://${host}/v2/`, child, () => stderr);
  } catch (error) {
    await cleanup();
    throw error;
  }

  const credentials = auth === "none" ? undefined : { username, password };
  return {
    auth,
    host,
    url: `http://${host}`,
    credentials,
    tokenServer,
    authorizationFor(repository) {
      if (auth === "basic") return `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}`;
      if (auth === "bearer") return `Bearer ${tokenServer!.issue(username, [`repository:${repository}:pull,push`])}`;
      return undefined;
    },
    stop: cleanup,
  };
}

async function waitForRegistry(url: string, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 20_000;
  let exited = false;
  child.once("exit", () => (exited = true));
  while (Date.now() < deadline) {
    if (exited) throw new Error(`docker-registry exited at start-up: ${stderr()}`);
    try {
      const res = await fetch(url);
      await res.arrayBuffer();
      if (res.status === 200 || res.status === 401) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`docker-registry did not answer on ${url} within 20 s: ${stderr()}`);
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

// ---- pushing test images over the registry API ----------------------------------------------------

export type TestImageShape = "docker-v2" | "oci" | "oci-index-with-attestation" | "docker-manifest-list" | "oci-index-missing-platform";

export interface PushTestImageOptions {
  /**
   * Platforms: for single-arch shapes the first one (default linux/amd64); for index shapes all of
   * them (default linux/amd64 + linux/arm64; "missing-platform" drops the last one).
   */
  platforms?: string[];
  /** Spell an architecture differently in configs/index entries (e.g. `{ arm64: "aarch64" }`). */
  architectureSpelling?: Record<string, string>;
  /** arm64 entries carry `variant: "v8"` in index shapes (default true). */
  arm64Variant?: boolean;
}

export interface PushedTestImage {
  digest: string;
  mediaType: string;
  /** Platforms a correct reader must report (normalised). */
  platforms: string[];
  /** Index shapes: each platform's child manifest (normalised platform, digest) and its attestation manifest's digest (OCI shapes). */
  children?: Array<{ platform: string; digest: string; attestation?: string }>;
}

const MT = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  ociLayer: "application/vnd.oci.image.layer.v1.tar+gzip",
  dockerLayer: "application/vnd.docker.image.rootfs.diff.tar.gzip",
};

export function digestOf(data: Buffer | string): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

interface PushTarget {
  url: string;
  authorizationFor(repository: string): string | undefined;
}

async function api(target: PushTarget, repository: string, method: string, pathOrUrl: string, body?: Buffer, contentType?: string) {
  const headers: Record<string, string> = {};
  const authorization = target.authorizationFor(repository);
  if (authorization) headers.authorization = authorization;
  if (contentType) headers["content-type"] = contentType;
  const url = pathOrUrl.startsWith("http") ? pathOrUrl : `${target.url}${pathOrUrl}`;
  const res = await fetch(url, { method, headers, body });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`${method} ${url} → HTTP ${res.status}: ${text.slice(0, 300)}`);
  return res;
}

export async function uploadBlob(target: PushTarget, repository: string, data: Buffer): Promise<{ digest: string; size: number }> {
  const digest = digestOf(data);
  const start = await api(target, repository, "POST", `/v2/${repository}/blobs/uploads/`);
  const location = new URL(start.headers.get("location")!, target.url);
  location.searchParams.set("digest", digest);
  await api(target, repository, "PUT", location.toString(), data, "application/octet-stream");
  return { digest, size: data.length };
}

export async function putTestManifest(target: PushTarget, repository: string, reference: string, document: unknown, mediaType: string) {
  const body = Buffer.from(JSON.stringify(document));
  await api(target, repository, "PUT", `/v2/${repository}/manifests/${reference}`, body, mediaType);
  return { digest: digestOf(body), size: body.length, mediaType };
}

function splitPlatform(platform: string) {
  const [os, architecture, variant] = platform.split("/");
  return { os: os!, architecture: architecture!, variant };
}

/** One single-arch image (config + one layer + manifest, pushed by digest); returns its descriptor. */
async function pushSingle(
  target: PushTarget,
  repository: string,
  platform: string,
  format: "docker" | "oci",
  spelling: Record<string, string>,
  reference?: string,
) {
  const { os, architecture, variant } = splitPlatform(platform);
  const layer = randomBytes(64);
  const config = Buffer.from(
    JSON.stringify({
      architecture: spelling[architecture] ?? architecture,
      os,
      ...(variant ? { variant } : {}),
      config: {},
      rootfs: { type: "layers", diff_ids: [digestOf(layer)] },
    }),
  );
  const configBlob = await uploadBlob(target, repository, config);
  const layerBlob = await uploadBlob(target, repository, layer);
  const mediaType = format === "oci" ? MT.ociManifest : MT.dockerManifest;
  const manifest = {
    schemaVersion: 2,
    mediaType,
    config: { mediaType: format === "oci" ? MT.ociConfig : MT.dockerConfig, ...configBlob },
    layers: [{ mediaType: format === "oci" ? MT.ociLayer : MT.dockerLayer, ...layerBlob }],
  };
  const body = Buffer.from(JSON.stringify(manifest));
  return putTestManifest(target, repository, reference ?? digestOf(body), manifest, mediaType);
}

/** A BuildKit-style attestation manifest for `subject` (platform unknown/unknown in the index). */
async function pushAttestation(target: PushTarget, repository: string, subject: string) {
  const config = await uploadBlob(
    target,
    repository,
    Buffer.from(JSON.stringify({ architecture: "unknown", os: "unknown", config: {}, rootfs: { type: "layers", diff_ids: [] } })),
  );
  const statement = await uploadBlob(
    target,
    repository,
    Buffer.from(JSON.stringify({ _type: "https://in-toto.io/Statement/v0.1", subject: [{ digest: subject }] })),
  );
  const manifest = {
    schemaVersion: 2,
    mediaType: MT.ociManifest,
    config: { mediaType: MT.ociConfig, ...config },
    layers: [{ mediaType: "application/vnd.in-toto+json", ...statement, annotations: { "in-toto.io/predicate-type": "https://spdx.dev/Document" } }],
  };
  const body = Buffer.from(JSON.stringify(manifest));
  return putTestManifest(target, repository, digestOf(body), manifest, MT.ociManifest);
}

/** Pushes `repository:tag` in the given shape and returns what a correct reader must report. */
export async function pushTestImage(
  target: PushTarget,
  repository: string,
  tag: string,
  shape: TestImageShape,
  options: PushTestImageOptions = {},
): Promise<PushedTestImage> {
  const spelling = options.architectureSpelling ?? {};
  const normal = (p: string) => {
    const { os, architecture, variant } = splitPlatform(p);
    return architecture === "arm64" || !variant ? `${os}/${architecture}` : `${os}/${architecture}/${variant}`;
  };
  if (shape === "docker-v2" || shape === "oci") {
    const platform = options.platforms?.[0] ?? "linux/amd64";
    const pushed = await pushSingle(target, repository, platform, shape === "oci" ? "oci" : "docker", spelling, tag);
    return { digest: pushed.digest, mediaType: pushed.mediaType, platforms: [normal(platform)] };
  }
  let platforms = options.platforms ?? ["linux/amd64", "linux/arm64"];
  if (shape === "oci-index-missing-platform") platforms = platforms.slice(0, -1);
  const format = shape === "docker-manifest-list" ? "docker" : "oci";
  const entries: unknown[] = [];
  const children: NonNullable<PushedTestImage["children"]> = [];
  for (const platform of platforms) {
    const child = await pushSingle(target, repository, platform, format, spelling);
    children.push({ platform: normal(platform), digest: child.digest });
    const { os, architecture, variant } = splitPlatform(platform);
    const withVariant = variant ?? (architecture === "arm64" && options.arm64Variant !== false ? "v8" : undefined);
    entries.push({
      mediaType: child.mediaType,
      digest: child.digest,
      size: child.size,
      platform: { architecture: spelling[architecture] ?? architecture, os, ...(withVariant ? { variant: withVariant } : {}) },
    });
    if (format === "oci") {
      const attestation = await pushAttestation(target, repository, child.digest);
      entries.push({
        mediaType: attestation.mediaType,
        digest: attestation.digest,
        size: attestation.size,
        platform: { architecture: "unknown", os: "unknown" },
        annotations: { "vnd.docker.reference.digest": child.digest, "vnd.docker.reference.type": "attestation-manifest" },
      });
      children.at(-1)!.attestation = attestation.digest;
    }
  }
  const mediaType = format === "oci" ? MT.ociIndex : MT.dockerList;
  const index = { schemaVersion: 2, mediaType, manifests: entries };
  const pushed = await putTestManifest(target, repository, tag, index, mediaType);
  return { digest: pushed.digest, mediaType, platforms: platforms.map(normal), children };
}

/**
 * Deletes a manifest by digest through the registry API (`DELETE /v2/<name>/manifests/<digest>`;
 * the test registry runs with storage deletion enabled). Distribution also drops the tags that
 * pointed at it. Used to make an index whose child manifest is gone, as after a registry clean-up.
 * On a Bearer registry the token asks for the `delete` action, which a push token lacks.
 */
export async function deleteTestManifest(
  target: PushTarget & Partial<Pick<TestRegistry, "tokenServer" | "credentials">>,
  repository: string,
  digest: string,
): Promise<void> {
  const { tokenServer, credentials } = target;
  const deleter: PushTarget =
    tokenServer && credentials
      ? { url: target.url, authorizationFor: (name) => `Bearer ${tokenServer.issue(credentials.username, [`repository:${name}:delete`])}` }
      : target;
  await api(deleter, repository, "DELETE", `/v2/${repository}/manifests/${digest}`);
}
