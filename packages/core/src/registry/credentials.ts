/**
 * Registry credentials and the credential-provider hook. Providers (an ECR plugin, a CI secret
 * store) are consulted, in registration order, before the user's docker config. Credentials are
 * only ever put into request headers; nothing prints them.
 */
export interface RegistryCredentials {
  username?: string;
  password?: string;
  /** An OAuth2 refresh token (docker config `identitytoken`), exchanged at the token realm. */
  identityToken?: string;
  /** A ready bearer token sent as-is (some providers hand these out). */
  registryToken?: string;
}

export interface CredentialProvider {
  /** Shown in errors and `kiln plugins`; never a secret. */
  name: string;
  /** True when this provider supplies credentials for the registry host (e.g. `*.dkr.ecr.*.amazonaws.com`). */
  matches(host: string): boolean;
  /** Credentials for the host, or undefined to let the next source answer. */
  getCredentials(host: string): Promise<RegistryCredentials | undefined> | RegistryCredentials | undefined;
}

/** Explicit credentials: by registry host, or a function of the host. */
export type CredentialSource =
  | Readonly<Record<string, RegistryCredentials>>
  | ((registry: string) => Promise<RegistryCredentials | undefined> | RegistryCredentials | undefined);

const providers: CredentialProvider[] = [];

/** Adds a provider; returns a function that removes it again. A provider with the same name is replaced. */
export function registerCredentialProvider(provider: CredentialProvider): () => void {
  unregisterCredentialProvider(provider.name);
  providers.push(provider);
  return () => {
    const index = providers.indexOf(provider);
    if (index >= 0) providers.splice(index, 1);
  };
}

export function unregisterCredentialProvider(name: string): void {
  const index = providers.findIndex((p) => p.name === name);
  if (index >= 0) providers.splice(index, 1);
}

export function credentialProviders(): readonly CredentialProvider[] {
  return providers;
}

/** The secret strings inside credentials, so error text can be scrubbed of them. */
export function secretsOf(credentials: RegistryCredentials | undefined): string[] {
  if (!credentials) return [];
  const out: string[] = [];
  for (const value of [credentials.password, credentials.identityToken, credentials.registryToken]) {
    if (value) out.push(value);
  }
  if (credentials.username && credentials.password) {
    out.push(Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64"));
  }
  return out;
}

export function hasCredentials(credentials: RegistryCredentials | undefined): credentials is RegistryCredentials {
  return Boolean(credentials && (credentials.registryToken || credentials.identityToken || (credentials.username && credentials.password !== undefined)));
}

/** Replaces every occurrence of a secret in `text` with `***`. */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) {
    if (secret.length >= 3) out = out.split(secret).join("***");
  }
  return out;
}
