/**
 * The `X-Registry-Auth` header the daemon needs for a push (even an anonymous one: `{}`). The
 * credentials come from core's `resolveRegistryCredentials` (explicit, credential providers, Docker
 * config — the registry client's own order). The header is URL-safe base64 JSON (padded) and goes
 * only into the request; the secrets are also returned so messages can be scrubbed of them.
 */
import { secretsOf, type RegistryCredentials } from "@kiln/core/plugin";

export interface RegistryAuth {
  /** The registry host the credentials are for. */
  registry: string;
  header: string;
  /** The secret strings in play (the header included), to scrub from any text. */
  secrets: string[];
}

/** `ghcr.io/acme` → `ghcr.io`: credentials belong to the host, not to a namespace inside it. */
export function registryHost(registry: string): string {
  return registry.split("/")[0]!.toLowerCase();
}

export function encodeRegistryAuth(registry: string, credentials: RegistryCredentials | undefined): RegistryAuth {
  const host = registryHost(registry);
  const body: Record<string, string> = {};
  if (credentials?.registryToken) {
    body.registrytoken = credentials.registryToken;
  } else if (credentials?.identityToken) {
    body.identitytoken = credentials.identityToken;
    body.serveraddress = host;
  } else if (credentials?.username && credentials.password !== undefined) {
    body.username = credentials.username;
    body.password = credentials.password;
    body.serveraddress = host;
  }
  // URL-safe alphabet WITH padding: the daemon decodes with Go's base64.URLEncoding, which rejects
  // unpadded input and then silently pushes anonymously.
  const header = Buffer.from(JSON.stringify(body)).toString("base64").replace(/\+/g, "-").replace(/\//g, "_");
  return { registry: host, header, secrets: [...secretsOf(credentials), header] };
}
