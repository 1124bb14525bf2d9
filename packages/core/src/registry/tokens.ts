/**
 * Who the client is to each registry (go-containerregistry's `authn` + bearer transport): the
 * credentials it found (explicit, providers, docker config — memoised a few minutes), the auth
 * scheme each registry asked for (learnt from a 401's challenge, or known up front for Docker Hub),
 * and bearer tokens — fetched from the token service through the same retry transport as every
 * request, cached per registry + scope + identity, one fetch shared by concurrent callers.
 */
import { InFlight } from "../dedupe.js";
import { AuthError, RegistryError } from "../errors.js";
import type { EventListener } from "../events.js";
import { raceAbort } from "./abort.js";
import { parseChallenges, TokenCache, tokenLifetimeSeconds } from "./auth.js";
import { hasCredentials, secretsOf, type RegistryCredentials } from "./credentials.js";
import type { RegistryEndpoint } from "./endpoints.js";
import type { ErrorMapper } from "./errorMapping.js";
import type { HttpResponse } from "./http.js";
import type { RegistryReference } from "./refs.js";
import { resolveRegistryCredentials, type ResolveRegistryCredentialsOptions } from "./resolveCredentials.js";
import type { RetryTransport } from "./transport.js";

/** How long a credential lookup is reused by one client before it asks its sources again. */
const CREDENTIAL_CACHE_MS = 5 * 60_000;

interface HostAuth {
  scheme: "none" | "basic" | "bearer";
  realm?: string;
  service?: string;
}

export interface Authorization {
  headers: Record<string, string>;
  /** True when the request goes out without credentials. */
  anonymous: boolean;
}

export class RegistryAuth {
  private readonly tokens = new TokenCache();
  /**
   * Token fetches in flight, one per key, shared by concurrent callers: one caller's abort does not
   * fail the others; the fetch (and its socket) is aborted only when its last waiter has given up.
   * Each waiter's listener hears the shared fetch's retries.
   */
  private readonly pendingTokens = new InFlight<string>();
  private readonly hostAuth = new Map<string, HostAuth>();
  private readonly credentialCache = new Map<string, { pending: Promise<RegistryCredentials | undefined>; at: number }>();

  constructor(
    private readonly lookup: ResolveRegistryCredentialsOptions,
    private readonly transport: RetryTransport,
    private readonly errors: ErrorMapper,
  ) {}

  /** Headers that authenticate a request up front, from what earlier challenges taught us. */
  async authorization(
    registry: string,
    endpoint: RegistryEndpoint,
    scope: string[],
    signal: AbortSignal | undefined,
    onEvent?: EventListener,
  ): Promise<Authorization> {
    let state = this.hostAuth.get(registry);
    if (!state && endpoint.tokenRealm) {
      state = { scheme: "bearer", realm: endpoint.tokenRealm, service: endpoint.tokenService };
      this.hostAuth.set(registry, state);
    }
    // A credential helper cannot be interrupted midway; the caller stops waiting for it instead.
    const credentials = await raceAbort(this.credentialsFor(registry), signal, () => this.errors.cancelled({ registry, repository: "" }, signal));
    const anonymous = !hasCredentials(credentials);
    if (!state || state.scheme === "none") return { headers: {}, anonymous };
    if (state.scheme === "basic") {
      if (!credentials?.username || credentials.password === undefined) return { headers: {}, anonymous: true };
      const basic = Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64");
      return { headers: { authorization: `Basic ${basic}` }, anonymous: false };
    }
    const token = await this.bearerToken(registry, state, scope, credentials, false, signal, onEvent);
    return { headers: { authorization: `Bearer ${token}` }, anonymous };
  }

  /** Learns the auth scheme from a 401; "retry" when a new attempt can succeed. */
  async acceptChallenge(
    ref: RegistryReference,
    scope: string[],
    response: HttpResponse,
    signal: AbortSignal | undefined,
    onEvent?: EventListener,
    /** Whether the refused request carried credentials (false: it went out before the scheme was known). */
    sentAuthorization = true,
  ): Promise<"retry" | "denied"> {
    const challenges = parseChallenges(response.headers["www-authenticate"]);
    const bearer = challenges.find((c) => c.scheme === "bearer");
    const basic = challenges.find((c) => c.scheme === "basic");
    const previous = this.hostAuth.get(ref.registry);
    const credentials = await raceAbort(this.credentialsFor(ref.registry), signal, () => this.errors.cancelled(ref, signal));
    if (bearer?.params.realm) {
      const state: HostAuth = { scheme: "bearer", realm: bearer.params.realm, service: bearer.params.service };
      const known = previous?.scheme === "bearer" && previous.realm === state.realm && previous.service === state.service;
      this.hostAuth.set(ref.registry, state);
      // Sent anonymously while a concurrent request learnt the scheme: retry with a token. Its 401 says
      // nothing about our scope nor about the token we hold (keep it).
      if (!sentAuthorization) return "retry";
      if (known && bearer.params.error === "insufficient_scope") return "denied";
      // A token we sent was refused (expired early, revoked): drop it and ask for a fresh one.
      this.tokens.delete(tokenKey(ref.registry, state, scope, credentials));
      if (known) await this.bearerToken(ref.registry, state, scope, credentials, true, signal, onEvent);
      return "retry";
    }
    if (basic) {
      this.hostAuth.set(ref.registry, { scheme: "basic" });
      // Basic credentials already sent and refused, or none to send: nothing another attempt can change.
      // (A request sent anonymously while a concurrent one learnt the scheme is retried with them.)
      if ((previous?.scheme === "basic" && sentAuthorization) || !credentials?.username || credentials.password === undefined) return "denied";
      return "retry";
    }
    return "denied";
  }

  /**
   * Explicit credentials, then providers, then the docker config; memoised per registry for a few
   * minutes only, so a long-lived client picks up a credential helper's or provider's fresh token
   * (ECR's expire after 12 h, gcloud's after 1 h) without a restart.
   */
  private credentialsFor(registry: string): Promise<RegistryCredentials | undefined> {
    const cached = this.credentialCache.get(registry);
    if (cached && Date.now() - cached.at < CREDENTIAL_CACHE_MS) return cached.pending;
    const pending = resolveRegistryCredentials(registry, this.lookup).then((credentials) => {
      for (const secret of secretsOf(credentials)) this.errors.secrets.add(secret);
      return credentials;
    });
    // A failed lookup (a broken helper) is not cached: the next call tries again.
    pending.catch(() => this.credentialCache.delete(registry));
    this.credentialCache.set(registry, { pending, at: Date.now() });
    return pending;
  }

  private async bearerToken(
    registry: string,
    state: HostAuth,
    scope: string[],
    credentials: RegistryCredentials | undefined,
    forceRefresh: boolean,
    signal: AbortSignal | undefined,
    onEvent: EventListener | undefined,
  ): Promise<string> {
    if (credentials?.registryToken) return credentials.registryToken;
    const key = tokenKey(registry, state, scope, credentials);
    if (!forceRefresh) {
      const cached = this.tokens.get(key);
      if (cached) return cached;
    }
    return this.pendingTokens.run(key, (shared, report) => this.fetchToken(registry, state, scope, credentials, shared, report), {
      ...(signal ? { signal } : {}),
      ...(onEvent ? { onEvent } : {}),
      cancelled: (aborted) => this.errors.cancelled({ registry, repository: repositoryOf(scope) }, aborted),
    });
  }

  /** The token endpoint: GET (anonymous or Basic) or, with an identity token, the OAuth2 refresh grant. */
  private async fetchToken(
    registry: string,
    state: HostAuth,
    scope: string[],
    credentials: RegistryCredentials | undefined,
    signal: AbortSignal,
    onEvent: EventListener,
  ): Promise<string> {
    let realm: URL;
    try {
      realm = new URL(state.realm!);
      if (realm.protocol !== "https:" && realm.protocol !== "http:") throw new Error("scheme");
    } catch {
      throw this.errors.error(AuthError, `The registry ${registry} names an unusable token service ${JSON.stringify(state.realm)}`, {
        hint: "The registry's auth configuration is broken; contact its operator.",
        details: { registry },
      });
    }
    const ref: RegistryReference = { registry, repository: repositoryOf(scope) };
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
    // The token service gets the same retries and deadline as every other registry request.
    const token = await this.transport.run<string>({
      ref,
      whom: "its token service",
      reasonPrefix: "token service: ",
      signal,
      onEvent,
      prepare: async () => ({ method, url: realm, headers, body, maxBodyBytes: 1024 * 1024 }),
      judge: (response, _url, retries) => {
        const answer = this.readTokenAnswer(registry, ref, credentials, response, retries);
        const value = answer.token || answer.access_token;
        if (!value) {
          return {
            damaged: "unreadable answer",
            giveUp: () =>
              this.errors.error(RegistryError, `The token service of ${registry} gave no token`, {
                hint: "Its answer was not the expected JSON; try again later.",
                details: { registry },
              }),
          };
        }
        this.errors.secrets.add(value);
        this.tokens.set(tokenKey(registry, state, scope, credentials), value, tokenLifetimeSeconds(answer));
        return { done: value };
      },
    });
    return token;
  }

  /** The token service's answer as JSON; a typed error for a refusal or failure. */
  private readTokenAnswer(
    registry: string,
    ref: RegistryReference,
    credentials: RegistryCredentials | undefined,
    response: HttpResponse,
    retries: number,
  ): { token?: string; access_token?: string; expires_in?: unknown } {
    if (response.status === 401 || response.status === 403) {
      throw this.errors.error(
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
    if (response.status === 429) throw this.errors.rateLimited(ref, response, retries);
    if (response.status < 200 || response.status >= 300) {
      throw this.errors.error(RegistryError, `The token service of ${registry} answered HTTP ${response.status}`, {
        hint: "Try again later; if it persists the registry's auth service is failing.",
        details: { registry, status: response.status, attempts: retries + 1 },
      });
    }
    try {
      return JSON.parse(response.body.toString("utf8")) as { token?: string; access_token?: string; expires_in?: unknown };
    } catch {
      return {};
    }
  }
}

/** The repository a token scope is about (`repository:<name>:pull` → `<name>`). */
function repositoryOf(scope: string[]): string {
  return scope[0]!.split(":")[1] ?? "";
}

function tokenKey(registry: string, state: HostAuth, scope: string[], credentials: RegistryCredentials | undefined): string {
  // The identity part names who asked, never the secret itself.
  const who = credentials?.identityToken ? `id:${credentials.username ?? ""}` : credentials?.username ? `user:${credentials.username}` : "anonymous";
  return `${registry}|${state.realm}|${state.service ?? ""}|${scope.join(" ")}|${who}`;
}
