// The registry protocol client (OCI distribution) and what is built on it: its public names, listed
// once here and exported through `@kiln/core/plugin` (plugin.ts).
export { RegistryClient, toRegistryReference } from "./client.js";
export type {
  RegistryClientOptions,
  RegistryReference,
  RegistryTimeouts,
  CredentialSource,
  ManifestDescriptor,
  FetchedManifest,
  RegistryRequestOptions,
} from "./client.js";
export { checkImage, defaultRegistryClient } from "./check.js";
export type { CheckImageOptions, CheckImageResult } from "./check.js";
export {
  registerCredentialProvider,
  unregisterCredentialProvider,
  credentialProviders,
  secretsOf,
  redact as scrubSecrets,
} from "./credentials.js";
export { resolveRegistryCredentials } from "./resolveCredentials.js";
export type { ResolveRegistryCredentialsOptions } from "./resolveCredentials.js";
export type { CredentialProvider, RegistryCredentials } from "./credentials.js";
export { dockerConfigCredentials, dockerConfigPath, normalizeConfigKey, runCredentialHelper, DOCKER_HUB_CONFIG_KEY } from "./dockerConfig.js";
export { DOCKER_HUB_ENDPOINT, isDockerHub, isLoopbackRegistry, resolveEndpoint } from "./endpoints.js";
export type { RegistryEndpoint } from "./endpoints.js";
export { parseChallenges } from "./auth.js";
export type { AuthChallenge } from "./auth.js";
export { parseRetryAfter, parseRateLimit } from "./retry.js";
export type { RetryOptions, RateLimitInfo } from "./retry.js";
export {
  normalizePlatform,
  platformsOf,
  platformsOfIndex,
  platformOfConfig,
  missingPlatforms,
  isAttestationDescriptor,
  childDigestsByPlatform,
} from "./platforms.js";
export { platformsWithMissingChildren } from "./indexChildren.js";
export { REGISTRY_TIMEOUT_ENV, DEFAULT_REGISTRY_TIMEOUT_MS, registryTimeoutFromEnv } from "./deadline.js";
export {
  OCI_INDEX,
  OCI_MANIFEST,
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  OCI_CONFIG,
  DOCKER_CONFIG,
  MANIFEST_MEDIA_TYPES,
  MANIFEST_ACCEPT,
  isIndexMediaType,
  isImageManifestMediaType,
} from "./mediaTypes.js";
export { uploadBlob, mountBlobFrom, openBlobStream } from "./blobs.js";
export type { BlobSource, UploadBlobOptions, UploadedBlob, UploadForm } from "./blobs.js";
export { putImageManifests } from "./manifestsWrite.js";
export type { ManifestToPut, PutImageOptions } from "./manifestsWrite.js";
