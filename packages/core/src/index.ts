// Public API of @kiln/core. Every export is listed by name; each section belongs to one concern.

// errors
export {
  KilnError,
  ValidationError,
  InvalidReferenceError,
  SourceNotFoundError,
  UnknownBuilderError,
  PluginLoadError,
  ConfigError,
  AuthError,
  RateLimitError,
  RegistryError,
  CheckFailedError,
  BuildFailedError,
  PushFailedError,
  DaemonUnavailableError,
  CancelledError,
  SpecLoadError,
  describeValue,
} from "./errors.js";
export type { KilnErrorOptions } from "./errors.js";

// spec data model
export { ARCHITECTURES, contextDirForLayer } from "./layers.js";
export type { Architecture, Layer, LayerKind, BaseSpec, ImageSpec, PipOptions, PythonInstaller, NodePackageManager } from "./layers.js";

// events and plugin interfaces
export { emit } from "./events.js";
export type { BuildEvent, BuildEventType, BuildEventInput, EventListener, SerializedError } from "./events.js";
export { KILN_API_VERSION } from "./builder.js";
export type { ImageChecker, ImageCheckerClass, ImageCheckerLike, ImageCheckOptions, ImageBuilder, ImageBuild, BuildImageOptions } from "./builder.js";

// image spec (image.ts, validate.ts, dockerfile.ts)
export { Image, DEFAULT_PYTHON_VERSION, DEFAULT_NODE_VERSION, DEFAULT_IMAGE_NAME, DEFAULT_UV_IMAGE, DEFAULT_PLATFORMS, KILN_SPEC_VERSION } from "./image.js";
export type { CommonImageOptions, DebianBaseOptions, NodeBaseOptions, DockerfileOptions, CloneOptions, UvProjectOptions, NodeProjectOptions, ImageJSON } from "./image.js";
export { renderDockerfile, planDockerfile, dockerBuildTarget, requirementsPathInImage, KILN_FINAL_STAGE } from "./dockerfile.js";
export type { RenderOptions, DockerfilePlan, DockerfileStep, ContextFiles } from "./dockerfile.js";
export {
  validateRegistry,
  validateRepositoryName,
  validateTag,
  validateImageReference,
  validatePlatforms,
  validatePipRequirement,
  validateAptPackage,
  validateEnvKey,
} from "./validate.js";

// reference, hashing, build context (reference.ts, hash.ts, context.ts)
export { parseReference, formatReference, DOCKER_HUB_REGISTRY } from "./reference.js";
export type { ParsedReference, FormatReferenceOptions } from "./reference.js";
export { DEFAULT_IGNORE_PATTERNS, parseDockerignore, IgnoreMatcher, IgnorePattern } from "./dockerignore.js";
export { listSpecFiles, walkDirectory, ignoreRulesForFolder, compareUtf8 } from "./walk.js";
export type { WalkEntry, EntryType, FileGroup, SpecFiles, IgnoreSource, WalkOptions } from "./walk.js";
export { computeTag, explainTag, diffTagExplanations, digestEntry, digestFileSync, TAG_RECIPE_VERSION } from "./hash.js";
export type { ImageLike, TagInput, TagExplanation, TagInputChange, HashOptions, ExplainOptions } from "./hash.js";
export { FileDigestCache, hashCacheFile, sharedDigestCache } from "./statcache.js";
export type { StatIdentity } from "./statcache.js";
export { createBuildContext, contextDockerfilePath, SourceChangedError } from "./context.js";
export type { BuildContext, BuildContextOptions } from "./context.js";

// registry client (registry/…)
export {
  RegistryClient,
  toRegistryReference,
  checkImage,
  defaultRegistryClient,
  registerCredentialProvider,
  unregisterCredentialProvider,
  credentialProviders,
  resolveRegistryCredentials,
  secretsOf,
  scrubSecrets,
  dockerConfigCredentials,
  dockerConfigPath,
  runCredentialHelper,
  DOCKER_HUB_CONFIG_KEY,
  DOCKER_HUB_ENDPOINT,
  isDockerHub,
  isLoopbackRegistry,
  resolveEndpoint,
  parseChallenges,
  parseRetryAfter,
  parseRateLimit,
  normalizePlatform,
  platformsOf,
  platformsOfIndex,
  platformOfConfig,
  missingPlatforms,
  isAttestationDescriptor,
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
} from "./registry/index.js";
export type {
  RegistryClientOptions,
  RegistryReference,
  RegistryTimeouts,
  CredentialSource,
  ManifestDescriptor,
  FetchedManifest,
  CheckImageOptions,
  CheckImageResult,
  RegistryRequestOptions,
  CredentialProvider,
  RegistryCredentials,
  ResolveRegistryCredentialsOptions,
  RegistryEndpoint,
  AuthChallenge,
  RetryOptions,
  RateLimitInfo,
} from "./registry/index.js";

// engine, discovery, config, CLI support (engine.ts, discovery.ts, config.ts, …)
export { ImageBuildEngine, build, init, buildKey, repositoryOf } from "./engine.js";
export type { EngineBuildOptions, EngineImageBuild, EngineBuildHandle, BuildOutcome } from "./engine.js";
export { registerImageBuilder, unregisterImageBuilder, selectBuilder, getInitOptions } from "./selection.js";
export type { InitOptions, SelectedBuilder } from "./selection.js";
export { loadConfig, findProjectDir, CONFIG_FILE_NAME } from "./config.js";
export type { KilnConfig, LoadedConfig } from "./config.js";
export {
  discoverPlugins,
  resolvePackageDir,
  findProvider,
  loadImageBuilder,
  loadImageChecker,
  loadCredentialProvider,
  activateCredentialProviders,
} from "./discovery.js";
export type { PluginDiscovery, DiscoveredProvider, DiscoveredPackage, PluginProblem, ProviderKind } from "./discovery.js";
export { toNamedChecker, runCheckers } from "./checkers.js";
export type { NamedChecker, CheckOutcome, RunCheckersOptions } from "./checkers.js";
export { acquireImageLock, lockDirectory, lockPathFor } from "./lock.js";
export type { LockHandle, AcquireLockOptions } from "./lock.js";
export { SharedWork } from "./dedupe.js";
export { redactSecrets, redactUrl, serializeError } from "./redact.js";

// build secrets (secrets.ts; declared with withCommands(..., { secrets }))
export { secretIdsOf, resolveBuildSecrets, redactBuildSecrets, secretRedactor } from "./secrets.js";
export { MissingSecretError, BuildSecretsNeedBuildKitError } from "./errors.js";
export { validateSecretId, validateSecretTarget, validateSecretMounts, SECRET_ID_PATTERN } from "./validate.js";
export type { SecretMount } from "./layers.js";
export type { CommandOptions } from "./image.js";
