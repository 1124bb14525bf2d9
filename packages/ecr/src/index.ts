// Public API of @kiln/ecr.

// existence checks (registered as `ecr` in package.json `kiln.imageCheckers`)
export { EcrImageChecker } from "./checker.js";
export type { EcrImageCheckerOptions } from "./checker.js";
export { withEcrChecker } from "./withEcrChecker.js";

// push credentials (registered as `ecr` in package.json `kiln.credentialProviders`)
export { createEcrCredentialProvider, ecrCredentialProvider, registerEcrCredentials } from "./credentials.js";
export type { EcrCredentialProvider, EcrCredentialProviderOptions, EcrRegistryCredentials } from "./credentials.js";
export { EcrTokenCache } from "./tokenCache.js";
export type { EcrToken, TokenCacheOptions } from "./tokenCache.js";

// shared client options and registry hosts
export { EcrClientPool, DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY_MODE } from "./client.js";
export type { EcrClientOptions, AwsCredentialsOption } from "./client.js";
export { parseEcrHost, isEcrHost, ecrRegistryHost, splitRepository } from "./host.js";
export type { EcrRegistry, EcrRegistryAlias, EcrRegistryAliases, EcrRepositoryRef } from "./host.js";
export type { EcrWarning, EcrWarningListener } from "./warnings.js";
