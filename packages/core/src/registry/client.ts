/**
 * RegistryClient: the OCI distribution protocol as Kiln needs it — manifest HEAD/GET/PUT, blob
 * HEAD/GET/mount — with digest verification. Built like go-containerregistry's `remote` on a
 * `transport` and `authn`, each in its own file:
 * - transport.ts: the one retry loop (bounded retries with jittered backoff, Retry-After, per-request
 *   timeouts and the total deadline), for registry requests and token fetches alike;
 * - tokens.ts: credentials, the auth handshake (Basic, Bearer with realm/service/scope) and tokens;
 * - errorMapping.ts: answers and failures → typed errors, scrubbed of secrets;
 * - registryEvents.ts: the `registry.retry` / `registry.ratelimit` events of every wait.
 *
 * Answers are three-valued by construction: a method returns the thing, returns `null` only when
 * the registry said the thing does not exist (404, MANIFEST_UNKNOWN, NAME_UNKNOWN), and throws a
 * typed error (AuthError, RateLimitError, RegistryError — each with a hint) when it could not tell.
 * No message or event ever carries a credential: every error text is scrubbed of the secrets the
 * client holds.
 */
import { createHash } from "node:crypto";
import { RegistryError, type KilnError } from "../errors.js";
import type { EventListener } from "../events.js";
import type { RegistryRequestOptions } from "./abort.js";
import type { CredentialSource } from "./credentials.js";
import { DEFAULT_REGISTRY_TIMEOUT_MS, registryTimeoutFromEnv, type DeadlineSource } from "./deadline.js";
import { insecureRegistriesFromEnv, resolveEndpoint, type RegistryEndpoint } from "./endpoints.js";
import { ErrorMapper, type SendResult } from "./errorMapping.js";
import type { HttpResponse } from "./http.js";
import { bareMediaType, MANIFEST_ACCEPT } from "./mediaTypes.js";
import { platformsOf, type PlatformFields } from "./platforms.js";
import { describeRef, toReference, type RegistryReference } from "./refs.js";
import { resolveRetryOptions, type RetryOptions } from "./retry.js";
import { RegistryAuth } from "./tokens.js";
import { RetryTransport, type RegistryTimeouts } from "./transport.js";

export { describeRef, toReference, toRegistryReference, type RegistryReference } from "./refs.js";
export type { SendResult } from "./errorMapping.js";
export type { CredentialSource, RegistryRequestOptions, RegistryTimeouts };

export interface RegistryClientOptions {
  /** Explicit credentials by registry (or a function); consulted before providers and the docker config. */
  credentials?: CredentialSource;
  /** Read `$DOCKER_CONFIG/config.json` / `~/.docker/config.json` (default true). */
  useDockerConfig?: boolean;
  /** Environment for DOCKER_CONFIG, KILN_INSECURE_REGISTRIES and credential helpers (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Per-registry API endpoints (keys are registry names as written in references, e.g. `docker.io`). */
  endpoints?: Readonly<Record<string, RegistryEndpoint>>;
  /** Registries reached over plain HTTP besides loopback ones (added to KILN_INSECURE_REGISTRIES). */
  insecureRegistries?: readonly string[];
  retry?: RetryOptions;
  timeouts?: RegistryTimeouts;
  /**
   * Hears every request's `registry.retry` / `registry.ratelimit` events (a request's own
   * `onEvent`, see RegistryRequestOptions, hears its own too).
   */
  onEvent?: EventListener;
  /**
   * Registries where an anonymous reader's "denied" means "absent or private" and is reported as
   * absent (Docker Hub answers 401 both for a repository that does not exist and for a private one).
   * Default: none — elsewhere a denial is an AuthError, i.e. "could not tell".
   */
  anonymousDenialMeansAbsent?: (registry: string) => boolean;
  /** Largest manifest or config blob read into memory (default 4 MiB). */
  maxDocumentBytes?: number;
}

export interface ManifestDescriptor {
  digest: string;
  mediaType: string | undefined;
  size?: number;
}

export interface FetchedManifest extends ManifestDescriptor {
  body: Buffer;
  /** The parsed JSON document. */
  manifest: Record<string, unknown>;
}

type ScopeActions = "pull" | "pull,push";

/** @internal One exchange as `RegistryClient.exchange` takes it (registry/blobs.ts builds these). */
export interface Operation {
  method: "GET" | "HEAD" | "PUT" | "POST" | "PATCH";
  ref: RegistryReference;
  /** Path under `/v2/<repository>/`. */
  path: string;
  /** An absolute URL instead of `path` (a blob upload's `Location`); auth still goes only to the registry's origin. */
  url?: URL;
  headers?: Record<string, string>;
  body?: Buffer;
  actions: ScopeActions;
  /** Extra repositories the token must cover (cross-repository blob mount). */
  extraScopes?: string[];
  /** A check of a 2xx answer; a returned reason makes the attempt count as a transient failure. */
  validate?: (response: HttpResponse) => string | undefined;
  /** Maximum body size accepted. */
  maxBodyBytes?: number;
  /** Cancels the exchange (request, back-off, token fetch); see RegistryRequestOptions. */
  signal?: AbortSignal;
  /** Hears this exchange's retries and rate limits; see RegistryRequestOptions. */
  onEvent?: EventListener;
}

const DEFAULT_TIMEOUTS: Required<RegistryTimeouts> = { connectMs: 5_000, idleMs: 15_000, totalMs: DEFAULT_REGISTRY_TIMEOUT_MS };

export class RegistryClient {
  private readonly timeouts: Required<RegistryTimeouts>;
  private readonly insecure: string[];
  private readonly errors: ErrorMapper;
  private readonly transport: RetryTransport;
  private readonly auth: RegistryAuth;
  private readonly platformCache = new Map<string, string[]>();
  private readonly maxDocumentBytes: number;

  constructor(private readonly options: RegistryClientOptions = {}) {
    const retry = resolveRetryOptions(options.retry);
    // The option wins over KILN_REGISTRY_TIMEOUT_MS (then not even read), which wins over the default.
    const explicitTotal = options.timeouts?.totalMs;
    const envTotal = explicitTotal === undefined ? registryTimeoutFromEnv(options.env ?? process.env) : undefined;
    const deadlineSource: DeadlineSource = explicitTotal !== undefined ? "option" : envTotal !== undefined ? "env" : "default";
    this.timeouts = { ...DEFAULT_TIMEOUTS, ...(envTotal !== undefined ? { totalMs: envTotal } : {}), ...stripUndefined(options.timeouts ?? {}) };
    this.insecure = [...(options.insecureRegistries ?? []).map((r) => r.toLowerCase()), ...insecureRegistriesFromEnv(options.env ?? process.env)];
    this.maxDocumentBytes = options.maxDocumentBytes ?? 4 * 1024 * 1024;
    this.errors = new ErrorMapper({
      retries: retry.retries,
      totalMs: this.timeouts.totalMs,
      deadlineSource,
      anonymousDenialMeansAbsent: options.anonymousDenialMeansAbsent,
    });
    this.transport = new RetryTransport(retry, this.timeouts, this.errors, options.onEvent);
    this.auth = new RegistryAuth({ credentials: options.credentials, env: options.env, useDockerConfig: options.useDockerConfig }, this.transport, this.errors);
  }

  /** The API base URL used for a registry name. */
  endpointFor(registry: string): RegistryEndpoint {
    return resolveEndpoint(registry, lowerKeys(this.options.endpoints), this.insecure);
  }

  // ---- manifests -------------------------------------------------------------------------------

  /**
   * HEAD the manifest (does not count as a pull on Docker Hub). Null when absent. Falls back to GET
   * when the registry refuses HEAD (405) or answers without a digest.
   */
  async headManifest(reference: string | RegistryReference, options: RegistryRequestOptions = {}): Promise<ManifestDescriptor | null> {
    const ref = toReference(reference);
    const result = await this.send({
      method: "HEAD",
      ref,
      path: `manifests/${manifestTarget(ref)}`,
      headers: { accept: MANIFEST_ACCEPT },
      actions: "pull",
      ...perRequest(options),
    });
    const { response } = result;
    if (response.status === 405) return this.getManifest(ref, options);
    if (response.status >= 200 && response.status < 300) {
      const digest = header(response, "docker-content-digest") ?? ref.digest;
      if (!digest) return this.getManifest(ref, options);
      const size = Number(header(response, "content-length"));
      return { digest, mediaType: bareMediaType(header(response, "content-type")), ...(Number.isFinite(size) ? { size } : {}) };
    }
    return this.errors.absentOrThrow(result, ref, "manifest");
  }

  /** GET the manifest, verified against its digest. Null when absent. */
  async getManifest(reference: string | RegistryReference, options: RegistryRequestOptions = {}): Promise<FetchedManifest | null> {
    const ref = toReference(reference);
    let parsed: Record<string, unknown> | undefined;
    let digest: string | undefined;
    const result = await this.send({
      method: "GET",
      ref,
      path: `manifests/${manifestTarget(ref)}`,
      headers: { accept: MANIFEST_ACCEPT },
      actions: "pull",
      maxBodyBytes: this.maxDocumentBytes,
      ...perRequest(options),
      validate: (response) => {
        const actual = sha256(response.body);
        const expected = ref.digest ?? header(response, "docker-content-digest");
        if (expected?.startsWith("sha256:") && expected !== actual) {
          return "manifest digest mismatch (corrupted or truncated answer)";
        }
        try {
          const value = JSON.parse(response.body.toString("utf8")) as unknown;
          if (typeof value !== "object" || value === null || Array.isArray(value)) return "manifest is not a JSON object";
          parsed = value as Record<string, unknown>;
        } catch {
          return "manifest is not valid JSON";
        }
        digest = actual;
        return undefined;
      },
    });
    const { response } = result;
    if (response.status >= 200 && response.status < 300) {
      const mediaType = bareMediaType(header(response, "content-type")) ?? (typeof parsed!.mediaType === "string" ? (parsed!.mediaType as string) : undefined);
      return { digest: digest!, mediaType, size: response.body.length, body: response.body, manifest: parsed! };
    }
    return this.errors.absentOrThrow(result, ref, "manifest");
  }

  /** PUT a manifest (or index) under the reference's tag or digest; returns its digest. */
  async putManifest(reference: string | RegistryReference, body: Buffer | string, mediaType: string, options: RegistryRequestOptions = {}): Promise<string> {
    const ref = toReference(reference);
    const bytes = Buffer.from(body);
    const digest = sha256(bytes);
    const result = await this.send({
      method: "PUT",
      ref,
      path: `manifests/${ref.digest ?? ref.tag ?? digest}`,
      headers: { "content-type": mediaType },
      body: bytes,
      actions: "pull,push",
      ...perRequest(options),
    });
    const { response } = result;
    if (response.status >= 200 && response.status < 300) {
      const returned = header(response, "docker-content-digest");
      if (returned && returned !== digest) {
        throw this.errors.error(RegistryError, `${describeRef(ref)}: the registry stored the manifest under ${returned}, expected ${digest}`, {
          hint: "The registry rewrote the manifest; push it again or report this registry's behaviour.",
          details: { registry: ref.registry, expected: digest, returned },
        });
      }
      return digest;
    }
    throw this.errors.failure(result, ref, "manifest upload");
  }

  // ---- blobs -----------------------------------------------------------------------------------

  async blobExists(reference: string | RegistryReference, digest: string, options: RegistryRequestOptions = {}): Promise<boolean> {
    const ref = { ...toReference(reference), digest };
    const result = await this.send({ method: "HEAD", ref, path: `blobs/${digest}`, actions: "pull", ...perRequest(options) });
    if (result.response.status >= 200 && result.response.status < 300) return true;
    return (await this.errors.absentOrThrow(result, ref, "blob")) !== null;
  }

  /** Reads a small blob (an image config), verified against its digest. Null when absent. */
  async getBlob(reference: string | RegistryReference, digest: string, options: RegistryRequestOptions = {}): Promise<Buffer | null> {
    const ref = { ...toReference(reference), digest };
    const result = await this.send({
      method: "GET",
      ref,
      path: `blobs/${digest}`,
      actions: "pull",
      maxBodyBytes: this.maxDocumentBytes,
      ...perRequest(options),
      validate: (response) =>
        digest.startsWith("sha256:") && sha256(response.body) !== digest ? "blob digest mismatch (corrupted or truncated answer)" : undefined,
    });
    if (result.response.status >= 200 && result.response.status < 300) return result.response.body;
    return this.errors.absentOrThrow(result, ref, "blob");
  }

  /** Cross-repository mount of a blob already in `fromRepository` (same registry). True when mounted. */
  async mountBlob(reference: string | RegistryReference, digest: string, fromRepository: string, options: RegistryRequestOptions = {}): Promise<boolean> {
    const ref = toReference(reference);
    const result = await this.requestMount(ref, digest, fromRepository, options);
    if (result.response.status === 201) return true;
    if (result.response.status === 202) return false; // the registry opened an upload instead
    throw this.errors.failure(result, ref, "blob mount");
  }

  // ---- platforms -------------------------------------------------------------------------------

  /**
   * The platforms an image provides, normalised (`linux/amd64`, `linux/arm64`, …): from the index's
   * entries (attestations left out) or the config blob of a single-arch manifest. Null when absent.
   */
  async platforms(reference: string | RegistryReference, options: RegistryRequestOptions = {}): Promise<{ digest: string; platforms: string[] } | null> {
    const ref = toReference(reference);
    const fetched = await this.getManifest(ref, options);
    if (!fetched) return null;
    return { digest: fetched.digest, platforms: await this.platformsOfManifest(ref, fetched, options) };
  }

  /** Platforms of an already fetched manifest (content-addressed, so cached by digest). */
  async platformsOfManifest(reference: string | RegistryReference, fetched: FetchedManifest, options: RegistryRequestOptions = {}): Promise<string[]> {
    const ref = toReference(reference);
    const cached = this.platformCache.get(fetched.digest);
    if (cached) return cached;
    const platforms = await platformsOf(fetched.manifest, fetched.mediaType, async (configDigest) => {
      const blob = await this.getBlob(ref, configDigest, options);
      if (!blob) {
        throw this.errors.error(RegistryError, `${describeRef(ref)}: its config blob ${configDigest} is missing from the registry`, {
          hint: "The image is incomplete in the registry; push it again.",
          details: { registry: ref.registry, repository: ref.repository, digest: configDigest },
        });
      }
      try {
        return JSON.parse(blob.toString("utf8")) as PlatformFields;
      } catch {
        throw this.errors.error(RegistryError, `${describeRef(ref)}: its config blob ${configDigest} is not valid JSON`, {
          hint: "The image config is damaged in the registry; push the image again.",
          details: { registry: ref.registry, repository: ref.repository, digest: configDigest },
        });
      }
    });
    if (this.platformCache.size > 1000) this.platformCache.clear();
    this.platformCache.set(fetched.digest, platforms);
    return platforms;
  }

  // ---- hooks for the write paths (registry/blobs.ts, registry/manifestsWrite.ts) -------------------

  /** @internal One authenticated exchange with this client's retries, deadlines and redaction. */
  exchange(op: Operation): Promise<SendResult> {
    return this.send(op);
  }

  /** @internal The typed error (auth, rate limit, registry) for an answer that is not a success. */
  failureOf(result: SendResult, ref: RegistryReference, what: string): KilnError {
    return this.errors.failure(result, ref, what);
  }

  /** @internal A typed, scrubbed RegistryError for a write path's own findings. */
  registryError(message: string, hint: string, details: Record<string, unknown>): RegistryError {
    return this.errors.error(RegistryError, message, { hint, details });
  }

  /** @internal The headers that authenticate a request to `ref` now (after an exchange learnt the scheme). */
  async authHeaders(ref: RegistryReference, actions: "pull" | "pull,push", signal?: AbortSignal, onEvent?: EventListener): Promise<Record<string, string>> {
    const endpoint = this.endpointFor(ref.registry);
    return (await this.auth.authorization(ref.registry, endpoint, [`repository:${ref.repository}:${actions}`], signal, onEvent)).headers;
  }

  /** @internal The cross-repository mount request (`POST …/blobs/uploads/?mount=&from=`); its answer as is. */
  requestMount(ref: RegistryReference, digest: string, fromRepository: string, options: RegistryRequestOptions = {}): Promise<SendResult> {
    const query = `?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(fromRepository)}`;
    return this.send({
      method: "POST",
      ref,
      path: `blobs/uploads/${query}`,
      actions: "pull,push",
      extraScopes: [`repository:${fromRepository}:pull`],
      body: Buffer.alloc(0),
      ...perRequest(options),
    });
  }

  /** @internal The per-request timeouts this client uses. */
  requestTimeouts(): Readonly<Required<RegistryTimeouts>> {
    return this.timeouts;
  }

  // ---- the exchange: auth, challenges and redirects on the retry transport ---------------------

  private send(op: Operation): Promise<SendResult> {
    const { ref, signal, onEvent } = op;
    const endpoint = this.endpointFor(ref.registry);
    const origin = new URL(endpoint.url).origin;
    const scope = [`repository:${ref.repository}:${op.actions}`, ...(op.extraScopes ?? [])];
    let url = op.url ?? new URL(`${endpoint.url}/v2/${ref.repository}/${op.path}`);
    let anonymous = true;
    // Whether this attempt carried credentials: a concurrent request may have learnt the scheme meanwhile.
    let sentAuthorization = false;
    let challenged = false;
    let redirects = 0;
    return this.transport.run<SendResult>({
      ref,
      signal,
      onEvent,
      prepare: async () => {
        // Authorization goes only to the registry itself, never to a redirect target (blob storage/CDN).
        const auth = url.origin === origin ? await this.auth.authorization(ref.registry, endpoint, scope, signal, onEvent) : { headers: {}, anonymous: true };
        anonymous = auth.anonymous;
        sentAuthorization = auth.headers.authorization !== undefined;
        return { method: op.method, url, headers: { ...op.headers, ...auth.headers }, body: op.body, maxBodyBytes: op.maxBodyBytes ?? this.maxDocumentBytes };
      },
      judge: async (response, sentTo, retries) => {
        const result = { response, anonymous };
        if (response.status === 401 && sentTo.origin === origin && !challenged) {
          challenged = true;
          const challenge = await this.auth.acceptChallenge(ref, scope, response, signal, onEvent, sentAuthorization);
          return challenge === "retry" ? { again: true } : { done: result };
        }
        if ([301, 302, 303, 307].includes(response.status) && op.method !== "PUT") {
          const location = header(response, "location");
          if (location && redirects < 5) {
            redirects++;
            url = new URL(location, url);
            return { again: true };
          }
        }
        const problem = response.status >= 200 && response.status < 300 ? op.validate?.(response) : undefined;
        if (problem) {
          return {
            damaged: problem,
            giveUp: () =>
              this.errors.error(RegistryError, `${describeRef(ref)}: ${problem}, ${retries + 1} attempts`, {
                hint: "The registry (or a proxy in front of it) returned damaged data; try again later or check the proxy.",
                details: { registry: ref.registry, repository: ref.repository, attempts: retries + 1 },
              }),
          };
        }
        return { done: result };
      },
    });
  }
}

// ---- helpers ---------------------------------------------------------------------------------

/** The per-call options every exchange takes from a public method's options. */
function perRequest(options: RegistryRequestOptions): Pick<Operation, "signal" | "onEvent"> {
  return { signal: options.signal, onEvent: options.onEvent };
}

function manifestTarget(ref: RegistryReference): string {
  return ref.digest ?? ref.tag ?? "latest";
}

function header(response: HttpResponse, name: string): string | undefined {
  const value = response.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

export function sha256(data: Buffer): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

function lowerKeys<T>(record: Readonly<Record<string, T>> | undefined): Record<string, T> {
  const out: Record<string, T> = {};
  for (const [k, v] of Object.entries(record ?? {})) out[k.toLowerCase()] = v;
  return out;
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
