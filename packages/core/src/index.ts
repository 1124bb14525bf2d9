// Public API of @kiln/core. Every export is listed by name; each section belongs to one concern.

// errors
export {
  KilnError,
  ValidationError,
  InvalidReferenceError,
  SourceNotFoundError,
  UnknownBuilderError,
  UnknownCheckerError,
  PluginLoadError,
  ConfigError,
  AuthError,
  RateLimitError,
  RegistryError,
  RegistryTimeoutError,
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
export type { ImageChecker, ImageCheckerClass, ImageCheckerLike, ImageCheckOptions, ImageBuilder, ImageBuild, BuildImageOptions, CanBuildAnswer } from "./builder.js";

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
export { parseReference, formatReference, DOCKER_HUB_REGISTRY, OCI_LAYOUT_PREFIX, isOciLayoutTarget } from "./reference.js";
export type { ParsedReference, FormatReferenceOptions } from "./reference.js";
export { DEFAULT_IGNORE_PATTERNS, parseDockerignore, IgnoreMatcher, IgnorePattern } from "./dockerignore.js";
export { listSpecFiles, walkDirectory, ignoreRulesForFolder, compareUtf8 } from "./walk.js";
export { decodeName, displayName, hasRawBytes } from "./rawNames.js";
// Reading listed files the way the hasher and the build context do (for builders that write layers themselves).
export { OPEN_LISTED_FLAGS, openPath, assertListed, sizeChanged, sourceChanged, openFailure } from "./listedFile.js";
export { nameBytes } from "./rawNames.js";
export type { WalkEntry, EntryType, FileGroup, SpecFiles, IgnoreSource, WalkOptions } from "./walk.js";
export { computeTag, explainTag, diffTagExplanations, digestEntry, digestFileSync, TAG_RECIPE_VERSION } from "./hash.js";
export type { ImageLike, TagInput, TagExplanation, TagInputChange, HashOptions, ExplainOptions } from "./hash.js";
export { FileDigestCache, hashCacheFile, sharedDigestCache } from "./statcache.js";
export type { StatIdentity } from "./statcache.js";
export { createBuildContext, contextDockerfilePath, SourceChangedError, assertDockerfileAsHashed } from "./context.js";
export type { BuildContext, BuildContextOptions } from "./context.js";
export { snapshotSpec, snapshotOf, pinSources, filesFor, snapshotTag, pinnedDigest } from "./snapshot.js";
export type { SourceSnapshot } from "./snapshot.js";

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
  childDigestsByPlatform,
  platformsWithMissingChildren,
  REGISTRY_TIMEOUT_ENV,
  DEFAULT_REGISTRY_TIMEOUT_MS,
  registryTimeoutFromEnv,
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
  uploadBlob,
  mountBlobFrom,
  openBlobStream,
  putImageManifests,
} from "./registry/index.js";
export type { BlobSource, UploadBlobOptions, UploadedBlob, UploadForm, ManifestToPut, PutImageOptions } from "./registry/index.js";
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
export { registerImageBuilder, unregisterImageBuilder, selectBuilder, getInitOptions, BUILDER_PREFERENCE } from "./selection.js";
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
export { selectCheckers } from "./checkerSelection.js";
export type { SelectedCheckers } from "./checkerSelection.js";
export type { CheckerChoice } from "./checkerChoice.js";
export type { NamedChecker, CheckOutcome, RunCheckersOptions } from "./checkers.js";
export { acquireImageLock, lockDirectory, lockPathFor, lockLeaseMs, DEFAULT_LOCK_LEASE_MS } from "./lock.js";
export type { LockHandle, AcquireLockOptions } from "./lock.js";
export { UnsafeLockDirectoryError } from "./errors.js";
export { directoryProblem, ownershipProblem, preparePrivateDirectory, readOwnRegularFile } from "./privateDir.js";
export type { PrivacyRules } from "./privateDir.js";
export { SharedWork } from "./dedupe.js";
export { redactSecrets, redactUrl, serializeError } from "./redact.js";
// credentials in URLs (credentialUrls.ts): refused at declaration wherever a URL reaches an image
export { findCredentialUrls, containsCredentialUrl, maskCredentialUrls } from "./credentialUrls.js";
export type { CredentialUrl, CredentialUrlOptions } from "./credentialUrls.js";
export { refuseCredentialUrls } from "./validate.js";
export type { CredentialContext } from "./validate.js";

// build secrets (secrets.ts; declared with withCommands(..., { secrets }))
export { secretIdsOf, resolveBuildSecrets, redactBuildSecrets, secretRedactor } from "./secrets.js";
export { MissingSecretError, BuildSecretsNeedBuildKitError } from "./errors.js";
export { validateSecretId, validateSecretTarget, validateSecretMounts, SECRET_ID_PATTERN } from "./validate.js";
export type { SecretMount } from "./layers.js";
export type { CommandOptions } from "./image.js";

// coordination across hosts: lock providers and check caches (coordination/…; plugins such as @kiln/redis)
export { LeaseLostError, CoordinationUnavailableError } from "./errors.js";
export { CannotBuildError } from "./errors.js";
export { loadLockProvider, loadCheckCache } from "./discovery.js";
export { FileLockProvider } from "./coordination/fileLockProvider.js";
export type { TakeFileLock } from "./coordination/fileLockProvider.js";
export { selectLockProvider, selectCheckCache, FILE_LOCK_PROVIDER, NO_CHECK_CACHE } from "./coordination/select.js";
export type { SelectedLockProvider, SelectedCheckCache, CoordinationSource } from "./coordination/select.js";
export type {
  LockProvider,
  Lease,
  LeaseRequest,
  LockWait,
  CheckCache,
  CheckCacheKey,
  CachedCheck,
  CheckCacheLookup,
  CheckCacheLookupOptions,
} from "./coordination/types.js";
