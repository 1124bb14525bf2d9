/**
 * The `X-Registry-Auth` header the daemon needs for a push (even an anonymous one: `{}`), built from
 * the same sources as core's registry client: explicit credentials, plugin credential providers
 * (e.g. ECR), then the Docker config (credHelpers, credsStore, auths). The header is URL-safe base64 JSON (padded)
 * and goes only into the request; the secrets are also returned so messages can be scrubbed of them.
 */
import { credentialProviders, dockerConfigCredentials, type CredentialSource, type RegistryCredentials } from "@kiln/core";

export interface RegistryAuth {
  header: string;
  /** The secret strings in play, to scrub from any text. */
  secrets: string[];
  anonymous: boolean;
}

/** `ghcr.io/acme` → `ghcr.io`: credentials belong to the host, not to a namespace inside it. */
export function registryHost(registry: string): string {
  return registry.split("/")[0]!.toLowerCase();
}

export async function resolveRegistryCredentials(
  registry: string,
  options: { credentials?: CredentialSource; env?: NodeJS.ProcessEnv } = {},
): Promise<RegistryCredentials | undefined> {
  const host = registryHost(registry);
  const explicit = options.credentials;
  if (explicit) {
    const found = typeof explicit === "function" ? await explicit(host) : explicit[host];
    if (found) return found;
  }
  for (const provider of credentialProviders()) {
    if (!provider.matches(host)) continue;
    const found = await provider.getCredentials(host);
    if (found) return found;
  }
  return dockerConfigCredentials(host, { env: options.env });
}

export function encodeRegistryAuth(registry: string, credentials: RegistryCredentials | undefined): RegistryAuth {
  const host = registryHost(registry);
  const body: Record<string, string> = {};
  const secrets: string[] = [];
  if (credentials?.registryToken) {
    body.registrytoken = credentials.registryToken;
    secrets.push(credentials.registryToken);
  } else if (credentials?.identityToken) {
    body.identitytoken = credentials.identityToken;
    body.serveraddress = host;
    secrets.push(credentials.identityToken);
  } else if (credentials?.username && credentials.password !== undefined) {
    body.username = credentials.username;
    body.password = credentials.password;
    body.serveraddress = host;
    secrets.push(credentials.password, Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64"));
  }
  // URL-safe alphabet WITH padding: the daemon decodes with Go's base64.URLEncoding, which rejects
  // unpadded input and then silently pushes anonymously.
  const header = Buffer.from(JSON.stringify(body)).toString("base64").replace(/\+/g, "-").replace(/\//g, "_");
  return { header, secrets: [...secrets, header].filter((s) => s.length >= 3), anonymous: Object.keys(body).length === 0 };
}

/** Replaces each secret (and the header) in `text` with `***`. */
export function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) out = out.split(secret).join("***");
  return out;
}
