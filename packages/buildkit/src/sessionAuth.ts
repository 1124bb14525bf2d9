/**
 * Registry credentials for the daemon's pulls and pushes, served through the session's Auth service
 * (buildkit session/auth/auth.proto, package moby.filesync.v1):
 *
 *   Credentials(CredentialsRequest { string Host = 1; }) → CredentialsResponse { string Username = 1; string Secret = 2; }
 *
 * Only Credentials is served. FetchToken / GetTokenAuthority answer UNIMPLEMENTED, upon which the
 * daemon fetches registry tokens itself with these credentials (buildkit util/resolver/authorizer.go),
 * as it does for buildx without a token authority. An identity (refresh) token goes out as Secret
 * with an empty Username, which is how BuildKit's own client marks one.
 *
 * Credentials come from core's `resolveRegistryCredentials`: explicit ones, registered credential
 * providers (e.g. @kiln/ecr), then the Docker config (auths, credHelpers, credsStore) — the same
 * order the registry client and @kiln/docker's pushes use. They are never logged.
 */
import { resolveRegistryCredentials, secretsOf, type CredentialSource } from "@kiln/core/plugin";
import { asString, lengthDelimitedField, readFields, type UnaryHandler } from "@kiln/docker/internal";

export const AUTH_CREDENTIALS_METHOD = "/moby.filesync.v1.Auth/Credentials";

export interface AuthServiceOptions {
  credentials?: CredentialSource;
  env?: NodeJS.ProcessEnv;
  /** Told every secret served, so messages can be scrubbed of it. */
  onSecret?: (secret: string) => void;
  /** Told of each host the daemon asked about. */
  onRequest?: (host: string) => void;
}

export function decodeCredentialsRequest(buf: Buffer): string {
  let host = "";
  for (const { field, wire } of readFields(buf)) if (field === 1) host = asString(wire);
  return host;
}

export function encodeCredentialsResponse(username: string, secret: string): Buffer {
  return Buffer.concat([...(username ? [lengthDelimitedField(1, username)] : []), ...(secret ? [lengthDelimitedField(2, secret)] : [])]);
}

/** BuildKit names Docker Hub by its API host; Kiln's credential sources know it as docker.io. */
function credentialHost(host: string): string {
  return host === "registry-1.docker.io" || host === "index.docker.io" ? "docker.io" : host;
}

export function authCredentialsHandler(options: AuthServiceOptions): UnaryHandler {
  return async (request) => {
    const host = decodeCredentialsRequest(request);
    options.onRequest?.(host);
    const found = await resolveRegistryCredentials(credentialHost(host), { credentials: options.credentials, env: options.env });
    for (const secret of secretsOf(found)) options.onSecret?.(secret);
    if (found?.identityToken) return encodeCredentialsResponse("", found.identityToken);
    if (found?.username && found.password !== undefined) return encodeCredentialsResponse(found.username, found.password);
    // Anonymous (a bare registry token cannot be handed to the daemon's token flow).
    return encodeCredentialsResponse("", "");
  };
}
