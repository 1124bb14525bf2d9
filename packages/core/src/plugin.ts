// `@kiln/core/plugin`: helpers for writing Kiln plugins (image builders, checkers, credential and lock
// providers). Applications import from `@kiln/core`; the plugin contract itself (ImageBuilder,
// ImageChecker, LockProvider, … and the typed errors a plugin throws) stays there too, since an
// application can hand its own builder or checker to build(). Every name is listed once, here; the
// root entry re-exports this module for one release so older imports keep working (deprecated).

// events a plugin emits, and describing a bad value in an error message
export { emit } from "./events.js";
export { describeValue } from "./errors.js";

// spec details a builder needs (layers.ts, dockerfile.ts)
export { contextDirForLayer } from "./layers.js";
export { renderDockerfile, planDockerfile, dockerBuildTarget, requirementsPathInImage, usesUvImage, KILN_FINAL_STAGE } from "./dockerfile.js";
export type { RenderOptions, DockerfilePlan, DockerfileStep, ContextFiles } from "./dockerfile.js";

// validation of names, references and values a plugin receives (validate.ts)
export {
  validateRegistry,
  validateRepositoryName,
  validateTag,
  validateImageReference,
  validatePlatforms,
  validatePipRequirement,
  validateAptPackage,
  validateEnvKey,
  validateSecretId,
  validateSecretTarget,
  validateSecretMounts,
  SECRET_ID_PATTERN,
  refuseCredentialUrls,
} from "./validate.js";
export type { CredentialContext } from "./validate.js";

// build context: walking, ignoring and reading listed files the way the hasher does
// (dockerignore.ts, walk.ts, rawNames.ts, listedFile.ts, hash.ts, statcache.ts, context.ts, snapshot.ts)
export { DEFAULT_IGNORE_PATTERNS, parseDockerignore, IgnoreMatcher, IgnorePattern } from "./dockerignore.js";
export { listSpecFiles, walkDirectory, ignoreRulesForFolder, compareUtf8 } from "./walk.js";
export type { WalkEntry, EntryType, FileGroup, SpecFiles, IgnoreSource, WalkOptions } from "./walk.js";
export { decodeName, displayName, hasRawBytes, nameBytes } from "./rawNames.js";
export { OPEN_LISTED_FLAGS, openPath, assertListed, sizeChanged, sourceChanged, openFailure } from "./listedFile.js";
export { digestEntry, digestFileSync } from "./hash.js";
export { FileDigestCache, hashCacheFile, sharedDigestCache } from "./statcache.js";
export type { StatIdentity } from "./statcache.js";
export { createBuildContext, contextDockerfilePath, assertDockerfileAsHashed } from "./context.js";
export type { BuildContext, BuildContextOptions } from "./context.js";
export { snapshotSpec, snapshotOf, pinSources, filesFor, snapshotTag, pinnedDigest } from "./snapshot.js";
export type { SourceSnapshot } from "./snapshot.js";

// the registry client: transport, tokens, errors, blobs and manifests (registry/index.ts holds its list)
export * from "./registry/index.js";

// engine internals a plugin may reuse (engine.ts, selection.ts, discovery.ts, checkers.ts, …)
export { buildKey, repositoryOf } from "./engine.js";
export { selectBuilder, BUILDER_PREFERENCE } from "./selection.js";
export type { SelectedBuilder } from "./selection.js";
export {
  discoverPlugins,
  resolvePackageDir,
  findProvider,
  loadImageBuilder,
  loadImageChecker,
  loadCredentialProvider,
  activateCredentialProviders,
  loadLockProvider,
  loadCheckCache,
} from "./discovery.js";
export type { PluginDiscovery, DiscoveredProvider, DiscoveredPackage, PluginProblem, ProviderKind } from "./discovery.js";
export { toNamedChecker, runCheckers, defaultCheckerInstance } from "./checkers.js";
export type { NamedChecker, CheckOutcome, RunCheckersOptions } from "./checkers.js";
export { selectCheckers } from "./checkerSelection.js";
export type { SelectedCheckers } from "./checkerSelection.js";

// local locks, private directories, shared work in flight (lock.ts, privateDir.ts, dedupe.ts)
export { acquireImageLock, lockDirectory, lockPathFor, lockLeaseMs, DEFAULT_LOCK_LEASE_MS } from "./lock.js";
export type { LockHandle, AcquireLockOptions } from "./lock.js";
export { directoryProblem, ownershipProblem, preparePrivateDirectory, readOwnRegularFile } from "./privateDir.js";
export type { PrivacyRules } from "./privateDir.js";
export { SharedWork, InFlight } from "./dedupe.js";
export type { ShareOptions, InFlightOptions } from "./dedupe.js";

// keeping secrets out of events, errors and logs (redact.ts, credentialUrls.ts, secrets.ts)
export { redactSecrets, redactUrl, serializeError } from "./redact.js";
export { findCredentialUrls, containsCredentialUrl, maskCredentialUrls } from "./credentialUrls.js";
export type { CredentialUrl, CredentialUrlOptions } from "./credentialUrls.js";
export { secretIdsOf, resolveBuildSecrets, redactBuildSecrets, secretRedactor } from "./secrets.js";

// coordination: how the engine picks a lock provider and a check cache (coordination/select.ts)
export { selectLockProvider, selectCheckCache, FILE_LOCK_PROVIDER, NO_CHECK_CACHE } from "./coordination/select.js";
export type { SelectedLockProvider, SelectedCheckCache, CoordinationSource } from "./coordination/select.js";
