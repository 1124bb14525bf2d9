/**
 * The one lookup of a registry host's credentials, shared by the registry client and the builders
 * that hand credentials to another program (the Docker daemon's X-Registry-Auth): explicit
 * credentials first, then plugin credential providers in registration order, then the Docker config.
 */
import { AuthError } from "../errors.js";
import { credentialProviders, type CredentialSource, type RegistryCredentials } from "./credentials.js";
import { dockerConfigCredentials } from "./dockerConfig.js";

export interface ResolveRegistryCredentialsOptions {
  /** Explicit credentials by registry host (or a function); consulted first. */
  credentials?: CredentialSource;
  /** Environment for DOCKER_CONFIG and credential helpers (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Read the Docker config (default true). */
  useDockerConfig?: boolean;
}

/**
 * Credentials for `host` (a registry host such as `ghcr.io` or `127.0.0.1:5000`), or undefined for
 * anonymous access. A credential provider that throws becomes an AuthError naming the provider.
 */
export async function resolveRegistryCredentials(host: string, options: ResolveRegistryCredentialsOptions = {}): Promise<RegistryCredentials | undefined> {
  const source = options.credentials;
  if (typeof source === "function") {
    const found = await source(host);
    if (found) return found;
  } else if (source) {
    const found = source[host] ?? source[host.toLowerCase()];
    if (found) return found;
  }
  for (const provider of credentialProviders()) {
    if (!provider.matches(host)) continue;
    try {
      const found = await provider.getCredentials(host);
      if (found) return found;
    } catch (error) {
      // The provider's own message stays in `cause`: it may quote what it was given.
      throw new AuthError(`The credential provider "${provider.name}" failed for ${host}`, {
        hint: `Check the configuration of the plugin that registered "${provider.name}".`,
        cause: error,
        details: { registry: host, provider: provider.name },
      });
    }
  }
  if (options.useDockerConfig === false) return undefined;
  return dockerConfigCredentials(host, { env: options.env });
}
