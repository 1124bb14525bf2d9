/**
 * RegistryClient: the OCI distribution protocol as Kiln needs it — manifest HEAD/GET/PUT, blob
 * HEAD/GET/mount — with the auth handshake (Basic, Bearer with realm/service/scope), the user's
 * docker credentials and plugin credential providers, bounded retries with jittered backoff,
 * per-request timeouts, digest verification and rate-limit events.
 *
 * Answers are three-valued by construction: a method returns the thing, returns `null` only when
 * the registry said the thing does not exist (404, MANIFEST_UNKNOWN, NAME_UNKNOWN), and throws a
 * typed error (AuthError, RateLimitError, RegistryError — each with a hint) when it could not tell.
 * No message or event ever carries a credential: every error text is scrubbed of the secrets the
 * client holds.
 */
import { createHash } from "node:crypto";
import { AuthError, CancelledError, KilnError, RateLimitError, RegistryError } from "../errors.js";
import { emit, type EventListener } from "../events.js";
import { parseReference } from "../reference.js";
import { cancelledError, raceAbort, type RegistryRequestOptions } from "./abort.js";
import { parseChallenges, TokenCache, tokenLifetimeSeconds } from "./auth.js";
import {
  hasCredentials,
  redact,
  secretsOf,
  type CredentialSource,
  type RegistryCredentials,
} from "./credentials.js";
import { resolveRegistryCredentials } from "./resolveCredentials.js";
import { insecureRegistriesFromEnv, resolveEndpoint, type RegistryEndpoint } from "./endpoints.js";
import { httpRequest, TransportError, type HttpResponse } from "./http.js";
import { bareMediaType, MANIFEST_ACCEPT } from "./mediaTypes.js";
import { platformsOf, type PlatformFields } from "./platforms.js";
import {
  backoffDelay,
  isRetryableStatus,
  parseRateLimit,
  parseRetryAfter,
  resolveRetryOptions,
  sleep,
  type ResolvedRetryOptions,
  type RetryOptions,
} from "./retry.js";

/** A repository in a registry, optionally with a tag or digest (what `parseReference` returns). */
export interface RegistryReference {
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
}

export interface RegistryTimeouts {
  /** TCP/TLS connect (default 5 s). */
  connectMs?: number;
  /** Longest silence while waiting for or reading an answer (default 15 s). */
  idleMs?: number;
  /** Whole exchange, per attempt (default 30 s). */
  totalMs?: number;
}

export type { CredentialSource, RegistryRequestOptions };

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

interface Operation {
  method: "GET" | "HEAD" | "PUT" | "POST";
  ref: RegistryReference;
  /** Path under `/v2/<repository>/`. */
  path: string;
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
}

/** A token request shared by concurrent callers; aborted only when every caller has given up. */
interface SharedTokenRequest {
  promise: Promise<string>;
  controller: AbortController;
  waiters: number;
}

interface HostAuth {
  scheme: "none" | "basic" | "bearer";
  realm?: string;
  service?: string;
}

interface SendResult {
  response: HttpResponse;
  /** True when the request went out without credentials. */
  anonymous: boolean;
}

const DEFAULT_TIMEOUTS: Required<RegistryTimeouts> = { connectMs: 5_000, idleMs: 15_000, totalMs: 30_000 };

/** How long a credential lookup is reused by one client before it asks its sources again. */
const CREDENTIAL_CACHE_MS = 5 * 60_000;

export class RegistryClient {
  private readonly retry: ResolvedRetryOptions;
  private readonly timeouts: Required<RegistryTimeouts>;
  private readonly insecure: string[];
  private readonly tokens = new TokenCache();
  private readonly pendingTokens = new Map<string, SharedTokenRequest>();
  private readonly hostAuth = new Map<string, HostAuth>();
  private readonly credentialCache = new Map<string, { pending: Promise<RegistryCredentials | undefined>; at: number }>();
  private readonly secrets = new Set<string>();
  private readonly platformCache = new Map<string, string[]>();
  private readonly maxDocumentBytes: number;

  constructor(private readonly options: RegistryClientOptions = {}) {
    this.retry = resolveRetryOptions(options.retry);
    this.timeouts = { ...DEFAULT_TIMEOUTS, ...stripUndefined(options.timeouts ?? {}) };
    this.insecure = [
      ...(options.insecureRegistries ?? []).map((r) => r.toLowerCase()),
      ...insecureRegistriesFromEnv(options.env ?? process.env),
    ];
    this.maxDocumentBytes = options.maxDocumentBytes ?? 4 * 1024 * 1024;
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
      signal: options.signal,
    });
    const { response } = result;
    if (response.status === 405) return this.getManifest(ref, options);
    if (response.status >= 200 && response.status < 300) {
      const digest = header(response, "docker-content-digest") ?? ref.digest;
      if (!digest) return this.getManifest(ref, options);
      const size = Number(header(response, "content-length"));
      return { digest, mediaType: bareMediaType(header(response, "content-type")), ...(Number.isFinite(size) ? { size } : {}) };
    }
    return this.absentOrThrow(result, ref, "manifest");
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
      signal: options.signal,
      validate: (response) => {
        const actual = sha256(response.body);
        const expected = ref.digest ?? header(response, "docker-content-digest");
        if (expected && expected.startsWith("sha256:") && expected !== actual) {
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
      const mediaType =
        bareMediaType(header(response, "content-type")) ??
        (typeof parsed!.mediaType === "string" ? (parsed!.mediaType as string) : undefined);
      return { digest: digest!, mediaType, size: response.body.length, body: response.body, manifest: parsed! };
    }
    return this.absentOrThrow(result, ref, "manifest");
  }

  /** PUT a manifest (or index) under the reference's tag or digest; returns its digest. */
  async putManifest(
    reference: string | RegistryReference,
    body: Buffer | string,
    mediaType: string,
    options: RegistryRequestOptions = {},
  ): Promise<string> {
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
      signal: options.signal,
    });
    const { response } = result;
    if (response.status >= 200 && response.status < 300) {
      const returned = header(response, "docker-content-digest");
      if (returned && returned !== digest) {
        throw this.error(RegistryError, `${describeRef(ref)}: the registry stored the manifest under ${returned}, expected ${digest}`, {
          hint: "The registry rewrote the manifest; push it again or report this registry's behaviour.",
          details: { registry: ref.registry, expected: digest, returned },
        });
      }
      return digest;
    }
    throw this.failure(result, ref, "manifest upload");
  }

  // ---- blobs -----------------------------------------------------------------------------------

  async blobExists(reference: string | RegistryReference, digest: string, options: RegistryRequestOptions = {}): Promise<boolean> {
    const ref = { ...toReference(reference), digest };
    const result = await this.send({ method: "HEAD", ref, path: `blobs/${digest}`, actions: "pull", signal: options.signal });
    if (result.response.status >= 200 && result.response.status < 300) return true;
    return (await this.absentOrThrow(result, ref, "blob")) !== null;
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
      signal: options.signal,
      validate: (response) =>
        digest.startsWith("sha256:") && sha256(response.body) !== digest ? "blob digest mismatch (corrupted or truncated answer)" : undefined,
    });
    if (result.response.status >= 200 && result.response.status < 300) return result.response.body;
    return this.absentOrThrow(result, ref, "blob");
  }

  /** Cross-repository mount of a blob already in `fromRepository` (same registry). True when mounted. */
  async mountBlob(
    reference: string | RegistryReference,
    digest: string,
    fromRepository: string,
    options: RegistryRequestOptions = {},
  ): Promise<boolean> {
    const ref = toReference(reference);
    const query = `?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(fromRepository)}`;
    const result = await this.send({
      method: "POST",
      ref,
      path: `blobs/uploads/${query}`,
      actions: "pull,push",
      extraScopes: [`repository:${fromRepository}:pull`],
      body: Buffer.alloc(0),
      signal: options.signal,
    });
    if (result.response.status === 201) return true;
    if (result.response.status === 202) return false; // the registry opened an upload instead
    throw this.failure(result, ref, "blob mount");
  }

  // ---- platforms -------------------------------------------------------------------------------

  /**
   * The platforms an image provides, normalised (`linux/amd64`, `linux/arm64`, …): from the index's
   * entries (attestations left out) or the config blob of a single-arch manifest. Null when absent.
   */
  async platforms(
    reference: string | RegistryReference,
    options: RegistryRequestOptions = {},
  ): Promise<{ digest: string; platforms: string[] } | null> {
    const ref = toReference(reference);
    const fetched = await this.getManifest(ref, options);
    if (!fetched) return null;
    return { digest: fetched.digest, platforms: await this.platformsOfManifest(ref, fetched, options) };
  }

  /** Platforms of an already fetched manifest (content-addressed, so cached by digest). */
  async platformsOfManifest(
    reference: string | RegistryReference,
    fetched: FetchedManifest,
    options: RegistryRequestOptions = {},
  ): Promise<string[]> {
    const ref = toReference(reference);
    const cached = this.platformCache.get(fetched.digest);
    if (cached) return cached;
    const platforms = await platformsOf(fetched.manifest, fetched.mediaType, async (configDigest) => {
      const blob = await this.getBlob(ref, configDigest, options);
      if (!blob) {
        throw this.error(RegistryError, `${describeRef(ref)}: its config blob ${configDigest} is missing from the registry`, {
          hint: "The image is incomplete in the registry; push it again.",
          details: { registry: ref.registry, repository: ref.repository, digest: configDigest },
        });
      }
      try {
        return JSON.parse(blob.toString("utf8")) as PlatformFields;
      } catch {
        throw this.error(RegistryError, `${describeRef(ref)}: its config blob ${configDigest} is not valid JSON`, {
          hint: "The image config is damaged in the registry; push the image again.",
          details: { registry: ref.registry, repository: ref.repository, digest: configDigest },
        });
      }
    });
    if (this.platformCache.size > 1000) this.platformCache.clear();
    this.platformCache.set(fetched.digest, platforms);
    return platforms;
  }

  // ---- the exchange: auth + retries ------------------------------------------------------------

  private async send(op: Operation): Promise<SendResult> {
    const { ref } = op;
    const endpoint = this.endpointFor(ref.registry);
    const scope = [`repository:${ref.repository}:${op.actions}`, ...(op.extraScopes ?? [])];
    let url = new URL(`${endpoint.url}/v2/${ref.repository}/${op.path}`);
    let challenged = false;
    let redirects = 0;
    let attempt = 0;
    const { signal } = op;
    for (;;) {
      // Checked before every attempt: an aborted operation never sends another request.
      if (signal?.aborted) throw this.cancelled(ref, signal);
      const sameHost = url.origin === new URL(endpoint.url).origin;
      // Authorization goes only to the registry itself, never to a redirect target (blob storage/CDN).
      const auth = sameHost ? await this.authorization(ref.registry, endpoint, scope, signal) : { headers: {}, anonymous: true };
      let response: HttpResponse;
      try {
        // The caller's signal goes to the exchange as is; the per-attempt timeouts are httpRequest's
        // own timers, so neither cancels the other's bookkeeping.
        response = await httpRequest({
          method: op.method,
          url,
          headers: { ...op.headers, ...auth.headers },
          body: op.body,
          connectTimeoutMs: this.timeouts.connectMs,
          idleTimeoutMs: this.timeouts.idleMs,
          totalTimeoutMs: this.timeouts.totalMs,
          maxBodyBytes: op.maxBodyBytes ?? this.maxDocumentBytes,
          signal,
        });
      } catch (error) {
        if (signal?.aborted) throw this.cancelled(ref, signal);
        if (error instanceof TransportError && error.retryable && attempt < this.retry.retries) {
          attempt++;
          await this.pause(ref, attempt, backoffDelay(attempt - 1, this.retry), error.reason, signal);
          continue;
        }
        throw this.transportFailure(error, ref, url, attempt);
      }
      this.noteRateLimit(ref, response);

      if (response.status === 401 && sameHost && !challenged) {
        challenged = true;
        const challenge = await this.acceptChallenge(ref, scope, response, signal);
        if (challenge === "retry") continue;
        return { response, anonymous: auth.anonymous };
      }
      if ((response.status === 307 || response.status === 302 || response.status === 301 || response.status === 303) && op.method !== "PUT") {
        const location = header(response, "location");
        if (location && redirects < 5) {
          redirects++;
          url = new URL(location, url);
          continue;
        }
      }
      if (isRetryableStatus(response.status) && attempt < this.retry.retries) {
        attempt++;
        const retryAfter = parseRetryAfter(response.headers["retry-after"]);
        if (retryAfter !== undefined && retryAfter > this.retry.maxRetryAfterMs) {
          // Sleeping that long inside a check helps nobody: tell the caller when to come back.
          return { response, anonymous: auth.anonymous };
        }
        const delay = retryAfter ?? backoffDelay(attempt - 1, this.retry);
        await this.pause(ref, attempt, delay, `HTTP ${response.status}`, signal);
        continue;
      }
      if (response.status >= 200 && response.status < 300 && op.validate) {
        const problem = op.validate(response);
        if (problem) {
          if (attempt < this.retry.retries) {
            attempt++;
            await this.pause(ref, attempt, backoffDelay(attempt - 1, this.retry), problem, signal);
            continue;
          }
          throw this.error(RegistryError, `${describeRef(ref)}: ${problem}, ${attempt + 1} attempts`, {
            hint: "The registry (or a proxy in front of it) returned damaged data; try again later or check the proxy.",
            details: { registry: ref.registry, repository: ref.repository, attempts: attempt + 1 },
          });
        }
      }
      return { response, anonymous: auth.anonymous };
    }
  }

  /** Headers that authenticate a request up front, from what earlier challenges taught us. */
  private async authorization(
    registry: string,
    endpoint: RegistryEndpoint,
    scope: string[],
    signal: AbortSignal | undefined,
  ): Promise<{ headers: Record<string, string>; anonymous: boolean }> {
    let state = this.hostAuth.get(registry);
    if (!state && endpoint.tokenRealm) {
      state = { scheme: "bearer", realm: endpoint.tokenRealm, service: endpoint.tokenService };
      this.hostAuth.set(registry, state);
    }
    // A credential helper cannot be interrupted midway; the caller stops waiting for it instead.
    const credentials = await raceAbort(this.credentialsFor(registry), signal, () => this.cancelled({ registry, repository: "" }, signal));
    const anonymous = !hasCredentials(credentials);
    if (!state || state.scheme === "none") return { headers: {}, anonymous };
    if (state.scheme === "basic") {
      if (!credentials?.username || credentials.password === undefined) return { headers: {}, anonymous: true };
      const basic = Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64");
      return { headers: { authorization: `Basic ${basic}` }, anonymous: false };
    }
    const token = await this.bearerToken(registry, state, scope, credentials, false, signal);
    return { headers: { authorization: `Bearer ${token}` }, anonymous };
  }

  /** Learns the auth scheme from a 401; "retry" when a new attempt can succeed. */
  private async acceptChallenge(
    ref: RegistryReference,
    scope: string[],
    response: HttpResponse,
    signal: AbortSignal | undefined,
  ): Promise<"retry" | "denied"> {
    const challenges = parseChallenges(response.headers["www-authenticate"]);
    const bearer = challenges.find((c) => c.scheme === "bearer");
    const basic = challenges.find((c) => c.scheme === "basic");
    const previous = this.hostAuth.get(ref.registry);
    const credentials = await raceAbort(this.credentialsFor(ref.registry), signal, () => this.cancelled(ref, signal));
    if (bearer?.params.realm) {
      const state: HostAuth = { scheme: "bearer", realm: bearer.params.realm, service: bearer.params.service };
      const known = previous?.scheme === "bearer" && previous.realm === state.realm && previous.service === state.service;
      this.hostAuth.set(ref.registry, state);
      if (known && bearer.params.error === "insufficient_scope") return "denied";
      // A token we sent was refused (expired early, revoked): drop it and ask for a fresh one.
      this.tokens.delete(tokenKey(ref.registry, state, scope, credentials));
      if (known) await this.bearerToken(ref.registry, state, scope, credentials, true, signal);
      return "retry";
    }
    if (basic) {
      this.hostAuth.set(ref.registry, { scheme: "basic" });
      // Basic credentials already sent and refused, or none to send: nothing another attempt can change.
      if (previous?.scheme === "basic" || !credentials?.username || credentials.password === undefined) return "denied";
      return "retry";
    }
    return "denied";
  }

  private async bearerToken(
    registry: string,
    state: HostAuth,
    scope: string[],
    credentials: RegistryCredentials | undefined,
    forceRefresh: boolean,
    signal: AbortSignal | undefined,
  ): Promise<string> {
    if (credentials?.registryToken) return credentials.registryToken;
    const key = tokenKey(registry, state, scope, credentials);
    if (!forceRefresh) {
      const cached = this.tokens.get(key);
      if (cached) return cached;
    }
    let shared = this.pendingTokens.get(key);
    if (!shared || shared.controller.signal.aborted) {
      const controller = new AbortController();
      const entry: SharedTokenRequest = { controller, waiters: 0, promise: undefined as unknown as Promise<string> };
      entry.promise = this.fetchToken(registry, state, scope, credentials, controller.signal).finally(() => {
        if (this.pendingTokens.get(key) === entry) this.pendingTokens.delete(key);
      });
      // Every waiter may have given up; the shared request's own rejection is then nobody's to handle.
      entry.promise.catch(() => undefined);
      this.pendingTokens.set(key, entry);
      shared = entry;
    }
    return this.awaitSharedToken(key, shared, { registry, repository: scope[0]!.split(":")[1] ?? "" }, signal);
  }

  /**
   * One caller's wait for a shared token request. Concurrent checks share one token fetch, so one
   * caller's abort must not fail the others: the fetch itself is aborted only when its last waiter
   * has given up (then its socket closes too).
   */
  private awaitSharedToken(key: string, shared: SharedTokenRequest, ref: RegistryReference, signal: AbortSignal | undefined): Promise<string> {
    shared.waiters++;
    let waiting = true;
    // Synchronous on abort, so callers aborted by one signal in the same tick all count as gone.
    const leave = () => {
      if (!waiting) return;
      waiting = false;
      shared.waiters--;
    };
    const waited = raceAbort(shared.promise, signal, () => {
      leave();
      if (shared.waiters === 0) {
        shared.controller.abort(signal?.reason);
        if (this.pendingTokens.get(key) === shared) this.pendingTokens.delete(key);
      }
      return this.cancelled(ref, signal);
    });
    waited.then(leave, leave);
    return waited;
  }

  /** The token endpoint: GET (anonymous or Basic) or, with an identity token, the OAuth2 refresh grant. */
  private async fetchToken(
    registry: string,
    state: HostAuth,
    scope: string[],
    credentials: RegistryCredentials | undefined,
    signal: AbortSignal,
  ): Promise<string> {
    let realm: URL;
    try {
      realm = new URL(state.realm!);
      if (realm.protocol !== "https:" && realm.protocol !== "http:") throw new Error("scheme");
    } catch {
      throw this.error(AuthError, `The registry ${registry} names an unusable token service ${JSON.stringify(state.realm)}`, {
        hint: "The registry's auth configuration is broken; contact its operator.",
        details: { registry },
      });
    }
    const ref: RegistryReference = { registry, repository: scope[0]!.split(":")[1] ?? "" };
    let method: "GET" | "POST" = "GET";
    let body: Buffer | undefined;
    const headers: Record<string, string> = { accept: "application/json" };
    if (credentials?.identityToken) {
      method = "POST";
      const form = new URLSearchParams({ grant_type: "refresh_token", client_id: "kiln", refresh_token: credentials.identityToken });
      if (state.service) form.set("service", state.service);
      form.set("scope", scope.join(" "));
      body = Buffer.from(form.toString());
      headers["content-type"] = "application/x-www-form-urlencoded";
    } else {
      if (state.service) realm.searchParams.set("service", state.service);
      for (const s of scope) realm.searchParams.append("scope", s);
      if (credentials?.username && credentials.password !== undefined) {
        headers.authorization = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64")}`;
      }
    }
    let attempt = 0;
    for (;;) {
      if (signal.aborted) throw this.cancelled(ref, signal);
      let response: HttpResponse;
      try {
        response = await httpRequest({
          method,
          url: realm,
          headers,
          body,
          connectTimeoutMs: this.timeouts.connectMs,
          idleTimeoutMs: this.timeouts.idleMs,
          totalTimeoutMs: this.timeouts.totalMs,
          maxBodyBytes: 1024 * 1024,
          signal,
        });
      } catch (error) {
        if (signal.aborted) throw this.cancelled(ref, signal);
        if (error instanceof TransportError && error.retryable && attempt < this.retry.retries) {
          attempt++;
          await this.pause(ref, attempt, backoffDelay(attempt - 1, this.retry), `token service: ${error.reason}`, signal);
          continue;
        }
        throw this.transportFailure(error, ref, realm, attempt, "its token service");
      }
      if (isRetryableStatus(response.status) && attempt < this.retry.retries) {
        attempt++;
        const retryAfter = parseRetryAfter(response.headers["retry-after"]);
        if (retryAfter === undefined || retryAfter <= this.retry.maxRetryAfterMs) {
          await this.pause(ref, attempt, retryAfter ?? backoffDelay(attempt - 1, this.retry), `token service: HTTP ${response.status}`, signal);
          continue;
        }
      }
      if (response.status === 401 || response.status === 403) {
        throw this.error(
          AuthError,
          hasCredentials(credentials)
            ? `The token service of ${registry} rejected the credentials Kiln found for it`
            : `The registry ${registry} requires credentials`,
          {
            hint: hasCredentials(credentials)
              ? `Run \`docker login ${registry}\` again (or fix the credential provider for it).`
              : `Run \`docker login ${registry}\`, or configure a credential provider for it.`,
            details: { registry, status: response.status },
          },
        );
      }
      if (response.status === 429) throw this.rateLimited(ref, response, attempt);
      if (response.status < 200 || response.status >= 300) {
        throw this.error(RegistryError, `The token service of ${registry} answered HTTP ${response.status}`, {
          hint: "Try again later; if it persists the registry's auth service is failing.",
          details: { registry, status: response.status, attempts: attempt + 1 },
        });
      }
      let answer: { token?: string; access_token?: string; expires_in?: unknown; issued_at?: string };
      try {
        answer = JSON.parse(response.body.toString("utf8")) as typeof answer;
      } catch {
        answer = {};
      }
      const token = answer.token || answer.access_token;
      if (!token) {
        if (attempt < this.retry.retries) {
          attempt++;
          await this.pause(ref, attempt, backoffDelay(attempt - 1, this.retry), "token service: unreadable answer", signal);
          continue;
        }
        throw this.error(RegistryError, `The token service of ${registry} gave no token`, {
          hint: "Its answer was not the expected JSON; try again later.",
          details: { registry },
        });
      }
      this.secrets.add(token);
      this.tokens.set(tokenKey(registry, state, scope, credentials), token, tokenLifetimeSeconds(answer));
      return token;
    }
  }

  /**
   * Explicit credentials, then providers, then the docker config; memoised per registry for a few
   * minutes only, so a long-lived client picks up a credential helper's or provider's fresh token
   * (ECR's expire after 12 h, gcloud's after 1 h) without a restart.
   */
  private credentialsFor(registry: string): Promise<RegistryCredentials | undefined> {
    const cached = this.credentialCache.get(registry);
    if (cached && Date.now() - cached.at < CREDENTIAL_CACHE_MS) return cached.pending;
    const pending = this.lookupCredentials(registry).then((credentials) => {
      for (const secret of secretsOf(credentials)) this.secrets.add(secret);
      return credentials;
    });
    // A failed lookup (a broken helper) is not cached: the next call tries again.
    pending.catch(() => this.credentialCache.delete(registry));
    this.credentialCache.set(registry, { pending, at: Date.now() });
    return pending;
  }

  private lookupCredentials(registry: string): Promise<RegistryCredentials | undefined> {
    return resolveRegistryCredentials(registry, {
      credentials: this.options.credentials,
      env: this.options.env,
      useDockerConfig: this.options.useDockerConfig,
    });
  }

  // ---- answers that are not success ------------------------------------------------------------

  /** Null for "the registry says it does not exist"; a typed error for everything else. */
  private absentOrThrow(result: SendResult, ref: RegistryReference, what: string): null {
    const { response } = result;
    if (response.status === 404) return null;
    const codes = errorCodes(response);
    if (codes.includes("MANIFEST_UNKNOWN") || codes.includes("NAME_UNKNOWN") || codes.includes("BLOB_UNKNOWN")) return null;
    if (
      (response.status === 401 || response.status === 403) &&
      result.anonymous &&
      this.options.anonymousDenialMeansAbsent?.(ref.registry)
    ) {
      return null;
    }
    throw this.failure(result, ref, what);
  }

  private failure(result: SendResult, ref: RegistryReference, what: string): KilnError {
    const { response } = result;
    const status = response.status;
    const detail = errorSummary(response);
    if (status === 401 || status === 403) {
      return this.error(
        AuthError,
        result.anonymous
          ? `${describeRef(ref)}: the registry ${ref.registry} requires credentials to read this ${what} (HTTP ${status})`
          : `${describeRef(ref)}: the registry ${ref.registry} denied access with the credentials Kiln found (HTTP ${status})`,
        {
          hint: result.anonymous
            ? `Run \`docker login ${ref.registry}\` (or configure a credential provider) so Kiln can read ${ref.repository}.`
            : `Check that your account can access ${ref.repository}, or run \`docker login ${ref.registry}\` again.`,
          details: { registry: ref.registry, repository: ref.repository, status, anonymous: result.anonymous },
        },
      );
    }
    if (status === 429) return this.rateLimited(ref, response, this.retry.retries);
    return this.error(RegistryError, `${describeRef(ref)}: ${what} request failed with HTTP ${status}${detail ? ` (${detail})` : ""}`, {
      hint:
        status >= 500
          ? `The registry ${ref.registry} kept failing after ${this.retry.retries + 1} attempts; try again later.`
          : `The registry ${ref.registry} refused the request; check the reference and your access.`,
      details: { registry: ref.registry, repository: ref.repository, status },
    });
  }

  private rateLimited(ref: RegistryReference, response: HttpResponse, attempts: number): RateLimitError {
    const retryAfterMs = parseRetryAfter(response.headers["retry-after"]);
    const retryAfterSeconds = retryAfterMs === undefined ? undefined : Math.ceil(retryAfterMs / 1000);
    return this.error(
      RateLimitError,
      `${describeRef(ref)}: the registry ${ref.registry} is rate limiting requests (HTTP 429)${
        retryAfterSeconds === undefined ? "" : `; it asks to wait ${retryAfterSeconds} s`
      }`,
      {
        hint: isDockerHubName(ref.registry)
          ? "Log in with `docker login` (authenticated pulls have a higher limit) or wait and try again."
          : "Wait and try again, or reduce the number of parallel checks.",
        details: { registry: ref.registry, retryAfterSeconds, attempts: attempts + 1 },
      },
    );
  }

  private transportFailure(error: unknown, ref: RegistryReference, url: URL, attempts: number, whom = ""): KilnError {
    if (KilnError.isInstance(error)) return error;
    const reason = error instanceof TransportError ? error.message : String((error as Error)?.message ?? error);
    const target = whom ? `${ref.registry} (${whom})` : ref.registry;
    return this.error(RegistryError, `${describeRef(ref)}: could not reach ${target} at ${url.origin}: ${reason}, after ${attempts + 1} attempts`, {
      hint:
        error instanceof TransportError && error.reason === "connect"
          ? `Check that ${url.host} is reachable (network, proxy, DNS), and that the registry is running.`
          : "The connection failed repeatedly; try again, or raise the client's timeouts for a slow network.",
      details: { registry: ref.registry, url: url.origin, attempts: attempts + 1, reason: error instanceof TransportError ? error.reason : undefined },
    });
  }

  /** Builds a typed error whose text holds no secret this client knows. */
  private error<T extends KilnError>(
    Kind: new (message: string, options?: ConstructorParameters<typeof KilnError>[1]) => T,
    message: string,
    options: NonNullable<ConstructorParameters<typeof KilnError>[1]>,
  ): T {
    const secrets = [...this.secrets];
    return new Kind(redact(message, secrets), { ...options, hint: options.hint && redact(options.hint, secrets) });
  }

  private async pause(ref: RegistryReference, attempt: number, delayMs: number, reason: string, signal: AbortSignal | undefined): Promise<void> {
    if (signal?.aborted) throw this.cancelled(ref, signal);
    emit(this.options.onEvent, {
      type: "registry.retry",
      image: describeRef(ref),
      registry: ref.registry,
      attempt,
      delayMs,
      reason: redact(reason, [...this.secrets]),
    });
    // A back-off (or a registry's Retry-After) ends at once on abort, and no attempt follows it.
    try {
      await sleep(delayMs, signal);
    } catch (error) {
      if (signal?.aborted) throw this.cancelled(ref, signal);
      throw error;
    }
  }

  /** The CancelledError of an aborted exchange (its text scrubbed like every other error's). */
  private cancelled(ref: RegistryReference, signal: AbortSignal | undefined): CancelledError {
    const what = ref.repository ? describeRef(ref) : ref.registry;
    const error = cancelledError(`${what}: registry request`, signal, { registry: ref.registry, ...(ref.repository ? { repository: ref.repository } : {}) });
    return this.error(CancelledError, error.message, { hint: error.hint, cause: signal?.reason, details: error.details });
  }

  private noteRateLimit(ref: RegistryReference, response: HttpResponse): void {
    const fields: { limit?: number; remaining?: number; retryAfterSeconds?: number } = rateLimitFields(response);
    if (response.status === 429) {
      const retryAfterMs = parseRetryAfter(response.headers["retry-after"]);
      if (retryAfterMs !== undefined) fields.retryAfterSeconds = Math.ceil(retryAfterMs / 1000);
    } else if (Object.keys(fields).length === 0) return;
    emit(this.options.onEvent, { type: "registry.ratelimit", image: describeRef(ref), registry: ref.registry, ...fields });
  }
}

// ---- helpers ---------------------------------------------------------------------------------

function rateLimitFields(response: HttpResponse): { limit?: number; remaining?: number } {
  const info = parseRateLimit(response.headers);
  const out: { limit?: number; remaining?: number } = {};
  if (info?.limit !== undefined) out.limit = info.limit;
  if (info?.remaining !== undefined) out.remaining = info.remaining;
  return out;
}

function tokenKey(registry: string, state: HostAuth, scope: string[], credentials: RegistryCredentials | undefined): string {
  // The identity part names who asked, never the secret itself.
  const who = credentials?.identityToken ? `id:${credentials.username ?? ""}` : credentials?.username ? `user:${credentials.username}` : "anonymous";
  return `${registry}|${state.realm}|${state.service ?? ""}|${scope.join(" ")}|${who}`;
}

export function toReference(reference: string | RegistryReference): RegistryReference {
  return typeof reference === "string" ? parseReference(reference) : reference;
}

/** `parseReference` as the registry client reads it (Docker normalisation; `docker.io` for Docker Hub). */
export function toRegistryReference(reference: string): RegistryReference {
  return parseReference(reference);
}

function manifestTarget(ref: RegistryReference): string {
  const target = ref.digest ?? ref.tag ?? "latest";
  return target;
}

export function describeRef(ref: RegistryReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag ? `:${ref.tag}` : ""}${ref.digest ? `@${ref.digest}` : ""}`;
}

function header(response: HttpResponse, name: string): string | undefined {
  const value = response.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

export function sha256(data: Buffer): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

function errorCodes(response: HttpResponse): string[] {
  try {
    const parsed = JSON.parse(response.body.toString("utf8")) as { errors?: Array<{ code?: string }> };
    return (parsed.errors ?? []).map((e) => String(e.code ?? "").toUpperCase());
  } catch {
    return [];
  }
}

function errorSummary(response: HttpResponse): string {
  try {
    const parsed = JSON.parse(response.body.toString("utf8")) as { errors?: Array<{ code?: string; message?: string }> };
    return (parsed.errors ?? [])
      .map((e) => [e.code, e.message].filter(Boolean).join(": "))
      .join("; ")
      .slice(0, 200);
  } catch {
    return "";
  }
}

function isDockerHubName(registry: string): boolean {
  return ["docker.io", "index.docker.io", "registry-1.docker.io"].includes(registry.toLowerCase());
}

function lowerKeys<T>(record: Readonly<Record<string, T>> | undefined): Record<string, T> {
  const out: Record<string, T> = {};
  for (const [k, v] of Object.entries(record ?? {})) out[k.toLowerCase()] = v;
  return out;
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
