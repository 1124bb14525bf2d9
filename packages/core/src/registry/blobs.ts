/**
 * Blob writes (and the streamed read) of the OCI distribution API, on RegistryClient's one
 * authenticated exchange — same credentials, retries, deadlines and redaction as every read.
 *
 * Uploads follow what go-containerregistry does and what distribution 2.8 actually accepts:
 * - `monolithic` (small blobs): `POST …/blobs/uploads/?digest=<d>` with the body. A registry may store
 *   it (201) or — distribution 2.8 — answer 202 with an upload session and store nothing: then the
 *   same bytes go to that session as one `PUT <location>?digest=<d>`.
 * - `chunked`: `POST` (202 + Location), one `PATCH` per chunk (`Content-Range`), then `PUT ?digest=`.
 * The digest is computed while the bytes stream (the source is read once per attempt, a chunk at a
 * time — memory stays at one chunk whatever the blob's size) and checked against the expected one.
 *
 * Every upload ends with a HEAD of the blob: a registry that answered 201 but holds nothing is caught
 * there, and the other form is tried. A failed session (5xx after the retries, a reset mid-PATCH, a
 * session the registry forgot) is never resumed — distribution refuses a PATCH at a stale offset —
 * but started again from a fresh POST with the source reopened, up to `sessions` times. A blob is
 * reported uploaded only once the registry says it holds it, so a manifest put after it never names
 * a missing blob.
 */
import { createHash, type Hash } from "node:crypto";
import http from "node:http";
import https from "node:https";
import { Transform, type Readable, type TransformCallback } from "node:stream";
import type { KilnError } from "../errors.js";
import type { RegistryRequestOptions } from "./abort.js";
import { describeRef, toReference, type RegistryClient, type RegistryReference, type SendResult } from "./client.js";

export type UploadForm = "monolithic" | "chunked";

export interface BlobSource {
  /** The blob's digest when known up front (then an existing blob is skipped); else computed while uploading. */
  digest?: string;
  /** Its size in bytes, when known (picks the form; checked against what was read). */
  size?: number;
  /** Opens the bytes from the start; called once per upload attempt. */
  open(): Readable | Promise<Readable>;
}

export interface UploadBlobOptions extends RegistryRequestOptions {
  /** Bytes per PATCH of a chunked upload (default 16 MiB; at most this much is held in memory). */
  chunkBytes?: number;
  /** Blobs up to this size go up monolithically first (default 4 MiB). */
  monolithicMaxBytes?: number;
  /** Form tried first (default by size); the other is the fallback. */
  form?: UploadForm;
  /** Upload sessions tried before giving up (default 3). */
  sessions?: number;
  /** Repositories in the same registry that may hold the blob: a cross-repository mount is tried first. */
  mountFrom?: readonly string[];
  /** Skip the existence HEAD before uploading (the caller just checked). */
  skipExistenceCheck?: boolean;
  /** Bytes sent so far (for progress events). */
  onProgress?: (sentBytes: number) => void;
}

export interface UploadedBlob {
  digest: string;
  size: number;
  /** How the registry came to hold it. */
  via: "existing" | "mounted" | UploadForm;
  /** Upload sessions started (0 when it existed or was mounted). */
  sessions: number;
}

const DEFAULT_CHUNK_BYTES = 16 * 1024 * 1024;
const DEFAULT_MONOLITHIC_MAX = 4 * 1024 * 1024;

/** HEAD …/blobs/<digest>: true when the repository holds it. */
export function blobExists(
  client: RegistryClient,
  reference: string | RegistryReference,
  digest: string,
  options: RegistryRequestOptions = {},
): Promise<boolean> {
  return client.blobExists(reference, digest, options);
}

/**
 * Mounts `digest` from another repository of the same registry. `mounted` when the registry linked it
 * (201); otherwise the upload session the registry opened instead (202), or none when it refused.
 */
export async function mountBlobFrom(
  client: RegistryClient,
  reference: string | RegistryReference,
  digest: string,
  fromRepository: string,
  options: RegistryRequestOptions = {},
): Promise<{ mounted: true } | { mounted: false; location?: URL }> {
  const ref = toReference(reference);
  const result = await client.requestMount(ref, digest, fromRepository, options);
  const { status } = result.response;
  if (status === 201) return { mounted: true };
  if (status === 202) return { mounted: false, location: locationOf(client, ref, result) };
  // A refused mount (no access to the source, mounting disabled) is not an error: upload instead.
  return { mounted: false };
}

/**
 * Makes the repository hold the blob: skipped when it already does, mounted when a `mountFrom`
 * repository has it, else uploaded (see the module comment). Returns how, with digest and size.
 */
export async function uploadBlob(
  client: RegistryClient,
  reference: string | RegistryReference,
  source: BlobSource,
  options: UploadBlobOptions = {},
): Promise<UploadedBlob> {
  const ref = toReference(reference);
  const expected = source.digest;
  if (expected !== undefined && !options.skipExistenceCheck && (await client.blobExists(ref, expected, options))) {
    return { digest: expected, size: source.size ?? -1, via: "existing", sessions: 0 };
  }
  let pendingLocation: URL | undefined;
  if (expected !== undefined) {
    for (const from of options.mountFrom ?? []) {
      if (from === ref.repository) continue;
      const mount = await mountBlobFrom(client, ref, expected, from, options);
      if (mount.mounted && (await client.blobExists(ref, expected, options))) return { digest: expected, size: source.size ?? -1, via: "mounted", sessions: 0 };
      // The 202 of a mount that did not happen is an upload session: use it rather than leave it open.
      if (!mount.mounted && mount.location) pendingLocation = mount.location;
    }
  }
  const monolithicMax = options.monolithicMaxBytes ?? DEFAULT_MONOLITHIC_MAX;
  let form: UploadForm = options.form ?? (expected !== undefined && source.size !== undefined && source.size <= monolithicMax ? "monolithic" : "chunked");
  const sessions = Math.max(1, options.sessions ?? 3);
  let lastError: unknown;
  for (let session = 1; session <= sessions; session++) {
    if (options.signal?.aborted) throw options.signal.reason ?? new Error("aborted");
    try {
      const location = pendingLocation;
      pendingLocation = undefined;
      const uploaded =
        form === "monolithic" && expected !== undefined
          ? await uploadMonolithic(client, ref, source, expected, location, options)
          : await uploadChunked(client, ref, source, location, options);
      if (await client.blobExists(ref, uploaded.digest, options)) return { ...uploaded, via: form, sessions: session };
      // Accepted but not held (distribution 2.8 and a lone `POST ?digest=`): the other form next.
      lastError = client.registryError(
        `${describeRef(ref)}: the registry accepted the ${form} upload of ${uploaded.digest} but does not hold it`,
        "Kiln retries with the other upload form; if this persists the registry is dropping uploads.",
        { registry: ref.registry, repository: ref.repository, digest: uploaded.digest, form },
      );
      form = form === "monolithic" ? "chunked" : "monolithic";
    } catch (error) {
      if (error instanceof SourceMismatch) throw error.toKilnError(client, ref);
      if (options.signal?.aborted) throw error;
      lastError = error;
      // The session may have completed although its answer was lost: the registry decides.
      if (expected !== undefined && (await existsQuietly(client, ref, expected, options))) {
        return { digest: expected, size: source.size ?? -1, via: form, sessions: session };
      }
    }
  }
  throw lastError;
}

/** POST ?digest= with the body; on 202 (session opened, nothing stored) one PUT of the same bytes. */
async function uploadMonolithic(
  client: RegistryClient,
  ref: RegistryReference,
  source: BlobSource,
  digest: string,
  location: URL | undefined,
  options: UploadBlobOptions,
): Promise<{ digest: string; size: number }> {
  const body = await readAll(await source.open(), (source.size ?? 0) + 1);
  const actual = sha256Hex(body);
  if (actual !== digest) throw new SourceMismatch(digest, actual);
  if (source.size !== undefined && body.length !== source.size) throw new SourceMismatch(digest, actual, source.size, body.length);
  const headers = { "content-type": "application/octet-stream" };
  if (location === undefined) {
    const posted = await client.exchange({
      method: "POST",
      ref,
      path: `blobs/uploads/?digest=${encodeURIComponent(digest)}`,
      headers,
      body,
      actions: "pull,push",
      signal: options.signal,
      onEvent: options.onEvent,
    });
    if (posted.response.status === 201) {
      options.onProgress?.(body.length);
      return { digest, size: body.length };
    }
    if (posted.response.status !== 202) throw client.failureOf(posted, ref, "blob upload");
    location = locationOf(client, ref, posted);
  }
  const put = await client.exchange({
    method: "PUT",
    ref,
    path: "",
    url: withDigest(location, digest),
    headers,
    body,
    actions: "pull,push",
    signal: options.signal,
    onEvent: options.onEvent,
  });
  if (put.response.status !== 201 && put.response.status !== 204) throw client.failureOf(put, ref, "blob upload");
  options.onProgress?.(body.length);
  return { digest, size: body.length };
}

/** POST, a PATCH per chunk, PUT ?digest=; the digest is computed as the chunks go. */
async function uploadChunked(
  client: RegistryClient,
  ref: RegistryReference,
  source: BlobSource,
  location: URL | undefined,
  options: UploadBlobOptions,
): Promise<{ digest: string; size: number }> {
  if (location === undefined) {
    const posted = await client.exchange({
      method: "POST",
      ref,
      path: "blobs/uploads/",
      body: Buffer.alloc(0),
      actions: "pull,push",
      signal: options.signal,
      onEvent: options.onEvent,
    });
    if (posted.response.status !== 202) throw client.failureOf(posted, ref, "blob upload");
    location = locationOf(client, ref, posted);
  }
  const chunkBytes = Math.max(64 * 1024, options.chunkBytes ?? DEFAULT_CHUNK_BYTES);
  const hash = createHash("sha256");
  let offset = 0;
  const stream = await source.open();
  try {
    for await (const chunk of chunksOf(stream, chunkBytes)) {
      hash.update(chunk);
      const patched = await client.exchange({
        method: "PATCH",
        ref,
        path: "",
        url: location,
        headers: { "content-type": "application/octet-stream", "content-range": `${offset}-${offset + chunk.length - 1}` },
        body: chunk,
        actions: "pull,push",
        signal: options.signal,
        onEvent: options.onEvent,
      });
      if (patched.response.status !== 202 && patched.response.status !== 204) throw client.failureOf(patched, ref, "blob upload (PATCH)");
      location = locationOf(client, ref, patched, location);
      offset += chunk.length;
      options.onProgress?.(offset);
    }
  } finally {
    stream.destroy();
  }
  const digest = `sha256:${hash.digest("hex")}`;
  if (source.digest !== undefined && source.digest !== digest) throw new SourceMismatch(source.digest, digest);
  if (source.size !== undefined && source.size !== offset) throw new SourceMismatch(source.digest ?? digest, digest, source.size, offset);
  const put = await client.exchange({
    method: "PUT",
    ref,
    path: "",
    url: withDigest(location, digest),
    headers: { "content-type": "application/octet-stream" },
    body: Buffer.alloc(0),
    actions: "pull,push",
    signal: options.signal,
    onEvent: options.onEvent,
  });
  if (put.response.status !== 201 && put.response.status !== 204) throw client.failureOf(put, ref, "blob upload (PUT)");
  return { digest, size: offset };
}

/**
 * GET …/blobs/<digest> as a stream (for layers: never buffered). The bytes are checked against the
 * digest as they pass; a mismatch or a short body fails the stream. Redirects (blob storage) are
 * followed without the registry's credentials.
 */
export async function openBlobStream(
  client: RegistryClient,
  reference: string | RegistryReference,
  digest: string,
  options: RegistryRequestOptions = {},
): Promise<Readable> {
  const ref = { ...toReference(reference), digest };
  // The HEAD goes through the exchange: it learns the auth scheme (and fails typed when absent/denied).
  if (!(await client.blobExists(ref, digest, options))) {
    throw client.registryError(`${describeRef(ref)}: blob ${digest} is not in the registry`, "The image is incomplete in the registry; push it again.", {
      registry: ref.registry,
      repository: ref.repository,
      digest,
    });
  }
  const origin = new URL(client.endpointFor(ref.registry).url);
  let url = new URL(`${origin.href.replace(/\/$/, "")}/v2/${ref.repository}/blobs/${digest}`);
  const timeouts = client.requestTimeouts();
  for (let redirects = 0; redirects < 6; redirects++) {
    const headers = url.origin === origin.origin ? await client.authHeaders(ref, "pull", options.signal, options.onEvent) : {};
    const response = await getResponse(url, headers, timeouts.connectMs, timeouts.idleMs, options.signal);
    const status = response.statusCode ?? 0;
    if ([301, 302, 303, 307, 308].includes(status) && response.headers.location) {
      response.resume();
      url = new URL(response.headers.location, url);
      continue;
    }
    if (status !== 200) {
      response.resume();
      throw client.registryError(
        `${describeRef(ref)}: reading blob ${digest} failed with HTTP ${status}`,
        "Try again later; the registry could not serve the layer.",
        {
          registry: ref.registry,
          repository: ref.repository,
          status,
        },
      );
    }
    const declared = response.headers["content-length"] === undefined ? undefined : Number(response.headers["content-length"]);
    const out = new DigestCheck(digest, declared, describeRef(ref));
    response.on("error", (error) => out.destroy(error));
    response.on("aborted", () => out.destroy(new Error(`${describeRef(ref)}: connection closed while reading blob ${digest}`)));
    return response.pipe(out);
  }
  throw client.registryError(`${describeRef(ref)}: too many redirects reading blob ${digest}`, "Check the registry's storage configuration.", {
    registry: ref.registry,
  });
}

// ---- helpers -------------------------------------------------------------------------------------

/** The upload session URL an answer names (relative `Location`s resolve against the request's URL). */
function locationOf(client: RegistryClient, ref: RegistryReference, result: SendResult, base?: URL): URL {
  const raw = result.response.headers.location;
  const value = Array.isArray(raw) ? raw[0] : raw;
  if (!value) {
    if (base) return base;
    throw client.registryError(`${describeRef(ref)}: the registry opened an upload without a Location`, "The registry does not follow the distribution API.", {
      registry: ref.registry,
    });
  }
  return new URL(value, base ?? new URL(`${client.endpointFor(ref.registry).url}/v2/`));
}

function withDigest(location: URL, digest: string): URL {
  const url = new URL(location);
  url.searchParams.set("digest", digest);
  return url;
}

function sha256Hex(data: Buffer): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

async function existsQuietly(client: RegistryClient, ref: RegistryReference, digest: string, options: RegistryRequestOptions): Promise<boolean> {
  try {
    return await client.blobExists(ref, digest, options);
  } catch {
    return false;
  }
}

async function readAll(stream: Readable, limit: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
    total += buffer.length;
    parts.push(buffer);
    if (limit > 1 && total > limit) break;
  }
  return Buffer.concat(parts);
}

/** Re-chunks a stream into buffers of exactly `size` bytes (the last one shorter). */
async function* chunksOf(stream: Readable, size: number): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let held = 0;
  for await (const data of stream) {
    let buffer = Buffer.isBuffer(data) ? data : Buffer.from(data as string);
    while (held + buffer.length >= size) {
      const take = size - held;
      parts.push(buffer.subarray(0, take));
      yield Buffer.concat(parts);
      parts = [];
      held = 0;
      buffer = buffer.subarray(take);
    }
    if (buffer.length > 0) {
      parts.push(buffer);
      held += buffer.length;
    }
  }
  if (held > 0) yield Buffer.concat(parts);
}

/** The bytes read are not the bytes promised: a caller's bug or a source that changed — never retried. */
class SourceMismatch extends Error {
  constructor(
    readonly expected: string,
    readonly actual: string,
    readonly expectedSize?: number,
    readonly actualSize?: number,
  ) {
    super("blob source mismatch");
  }
  toKilnError(client: RegistryClient, ref: RegistryReference): KilnError {
    const what =
      this.expectedSize !== undefined && this.actualSize !== undefined && this.expectedSize !== this.actualSize
        ? `${this.actualSize} bytes, expected ${this.expectedSize}`
        : `digest ${this.actual}, expected ${this.expected}`;
    return client.registryError(`${describeRef(ref)}: the blob's source gave ${what}`, "The bytes changed while they were uploaded; build again.", {
      registry: ref.registry,
      expected: this.expected,
      actual: this.actual,
    });
  }
}

/** Passes bytes through, failing at the end when their sha256 or length is not the expected one. */
class DigestCheck extends Transform {
  private readonly hash: Hash = createHash("sha256");
  private received = 0;
  constructor(
    private readonly digest: string,
    private readonly declared: number | undefined,
    private readonly what: string,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    this.received += chunk.length;
    callback(null, chunk);
  }
  override _flush(callback: TransformCallback): void {
    if (this.declared !== undefined && this.received !== this.declared) {
      callback(new Error(`${this.what}: blob ${this.digest} truncated (${this.received} of ${this.declared} bytes)`));
      return;
    }
    const actual = `sha256:${this.hash.digest("hex")}`;
    if (this.digest.startsWith("sha256:") && actual !== this.digest) {
      callback(new Error(`${this.what}: blob ${this.digest} arrived with digest ${actual}`));
      return;
    }
    callback();
  }
}

const agents = { "http:": new http.Agent({ keepAlive: true }), "https:": new https.Agent({ keepAlive: true }) };

function getResponse(url: URL, headers: Record<string, string>, connectMs: number, idleMs: number, signal?: AbortSignal): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const transport = url.protocol === "https:" ? https : http;
    const request = transport.request(url, { method: "GET", headers: { "user-agent": "kiln", ...headers }, agent: agents[url.protocol as "http:"], signal });
    const connectTimer = setTimeout(() => request.destroy(new Error(`could not connect to ${url.host} within ${connectMs} ms`)), connectMs);
    request.on("socket", (socket) => {
      if (!socket.connecting) clearTimeout(connectTimer);
      else socket.once("connect", () => clearTimeout(connectTimer));
    });
    request.setTimeout(idleMs, () => request.destroy(new Error(`no data from ${url.host} for ${idleMs} ms`)));
    request.on("response", (response) => {
      clearTimeout(connectTimer);
      resolve(response);
    });
    request.on("error", (error) => {
      clearTimeout(connectTimer);
      reject(error);
    });
    request.end();
  });
}
