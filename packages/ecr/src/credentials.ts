/**
 * ECR push credentials through core's credential-provider hook, so `@kiln/docker` (and core's
 * registry client) push to ECR with the user's AWS credentials and no `docker login`.
 *
 * Precedence with a user's `docker-credential-ecr-login` (or any credHelper): an explicit
 * `credHelpers` entry for the exact registry host in the docker config WINS — this provider then
 * declines (returns undefined) and core falls through to the docker config, exactly as `docker push`
 * would behave. Set `dockerCredHelpers: "ignore"` to always use this provider instead. A global
 * `credsStore` or an `auths` entry (typically a 12-hour `docker login` token that may have expired)
 * does not make this provider step aside. When the AWS credential chain finds no credentials at
 * all, the provider also steps aside, so a prior `docker login` still works.
 */
import { GetAuthorizationTokenCommand } from "@aws-sdk/client-ecr";
import { AuthError, KilnError } from "@kiln/core";
import { registerCredentialProvider } from "@kiln/core/plugin";
import { toKilnError } from "./awsErrors.js";
import { EcrClientPool, type EcrClientOptions } from "./client.js";
import { configKeyHost, dockerCredHelperFor } from "./dockerConfig.js";
import { parseEcrHost, type EcrRegistry } from "./host.js";
import { EcrTokenCache, type EcrToken, type TokenCacheOptions } from "./tokenCache.js";

/** Structurally core's `RegistryCredentials` (username/password form). */
export interface EcrRegistryCredentials {
  username: string;
  password: string;
}

/** Structurally core's `CredentialProvider`. */
export interface EcrCredentialProvider {
  readonly name: string;
  matches(host: string): boolean;
  getCredentials(host: string): Promise<EcrRegistryCredentials | undefined>;
  /** Forgets cached tokens (the next call asks ECR again). */
  clearCache(): void;
  /** Releases the SDK clients' sockets. */
  destroy(): void;
}

export interface EcrCredentialProviderOptions extends EcrClientOptions, TokenCacheOptions {
  /** Provider name in core's registry (replaces a provider of the same name). Default "ecr". */
  name?: string;
  /**
   * "defer" (default): a docker config `credHelpers` entry for the host wins and this provider
   * steps aside. "ignore": this provider answers even when such an entry exists.
   */
  dockerCredHelpers?: "defer" | "ignore";
  /** Environment used to find the docker config (DOCKER_CONFIG). Default process.env. */
  env?: NodeJS.ProcessEnv;
}

export function createEcrCredentialProvider(options: EcrCredentialProviderOptions = {}): EcrCredentialProvider {
  const pool = new EcrClientPool(options);
  const registries = new Map<string, EcrRegistry>();
  const cache = new EcrTokenCache((key) => fetchAuthorizationToken(pool, registries.get(key)!), options);

  const registryOf = (host: string): EcrRegistry | undefined => parseEcrHost(configKeyHost(host), options.registryAliases);

  return {
    name: options.name ?? "ecr",
    matches(host: string): boolean {
      return registryOf(host) !== undefined;
    },
    async getCredentials(host: string): Promise<EcrRegistryCredentials | undefined> {
      const registry = registryOf(host);
      if (!registry) return undefined;
      if ((options.dockerCredHelpers ?? "defer") === "defer" && (await dockerCredHelperFor(registry.host, options.env))) {
        return undefined;
      }
      // One token per registry (account + region); FIPS and dual-stack hosts of it share it.
      const key = `${registry.registryId}|${registry.region}`;
      registries.set(key, registry);
      let token: EcrToken;
      try {
        token = await cache.get(key);
      } catch (error) {
        // No AWS credentials at all: let the docker config answer (e.g. an earlier `docker login`).
        if (KilnError.isInstance(error) && error.details?.awsError === "CredentialsProviderError") return undefined;
        throw error;
      }
      return { username: token.username, password: token.password };
    },
    clearCache(): void {
      cache.clear();
    },
    destroy(): void {
      pool.destroy();
    },
  };
}

/** The default provider (standard AWS chain), named in package.json `kiln.credentialProviders.ecr`. */
export const ecrCredentialProvider: EcrCredentialProvider = createEcrCredentialProvider();

/**
 * Registers an ECR credential provider with core; returns a function that unregisters it.
 * Without options the shared default provider is registered.
 */
export function registerEcrCredentials(options?: EcrCredentialProviderOptions): () => void {
  const provider = options ? createEcrCredentialProvider(options) : ecrCredentialProvider;
  const unregister = registerCredentialProvider(provider);
  return () => {
    unregister();
    if (provider !== ecrCredentialProvider) provider.destroy();
  };
}

async function fetchAuthorizationToken(pool: EcrClientPool, registry: EcrRegistry): Promise<EcrToken> {
  const client = pool.get(registry);
  const details = { registryId: registry.registryId, region: registry.region, host: registry.host };
  let data;
  try {
    const response = await client.send(new GetAuthorizationTokenCommand({ registryIds: [registry.registryId] }));
    data = response.authorizationData?.[0];
  } catch (error) {
    throw toKilnError(error, `GetAuthorizationToken for registry ${registry.registryId} (${registry.region})`, details, "credentials");
  }
  const decoded = data?.authorizationToken ? Buffer.from(data.authorizationToken, "base64").toString("utf8") : "";
  const colon = decoded.indexOf(":");
  if (colon <= 0 || colon === decoded.length - 1) {
    // Never echo the token: it is the credential.
    throw new AuthError(`ECR returned no usable authorization token for registry ${registry.registryId}`, {
      hint: "Check that the AWS identity may call ecr:GetAuthorizationToken; if it persists, log in with `aws ecr get-login-password`.",
      details,
    });
  }
  const expiresAt = data?.expiresAt instanceof Date ? data.expiresAt.getTime() : Date.now() + 12 * 60 * 60 * 1000;
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1), expiresAt };
}
