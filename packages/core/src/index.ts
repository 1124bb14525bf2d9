// Public API of @kiln/core: what applications use (and the plugin contract). Every export is listed by
// name; each section belongs to one concern. Helpers for plugin authors are in `@kiln/core/plugin` (plugin.ts).

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
} from "./errors.js";
export type { KilnErrorOptions } from "./errors.js";

// spec data model
export { ARCHITECTURES } from "./layers.js";
export type { Architecture, Layer, LayerKind, BaseSpec, ImageSpec, PipOptions, PythonInstaller, NodePackageManager } from "./layers.js";

// events and plugin interfaces
export type { BuildEvent, BuildEventType, BuildEventInput, EventListener, SerializedError } from "./events.js";
export { KILN_API_VERSION } from "./builder.js";
export type {
  ImageChecker,
  ImageCheckerClass,
  ImageCheckerLike,
  ImageCheckOptions,
  ImageBuilder,
  ImageBuild,
  BuildImageOptions,
  CanBuildAnswer,
} from "./builder.js";

// image spec (image.ts)
export { Image, DEFAULT_PYTHON_VERSION, DEFAULT_NODE_VERSION, DEFAULT_IMAGE_NAME, DEFAULT_UV_IMAGE, DEFAULT_PLATFORMS, KILN_SPEC_VERSION } from "./image.js";
export type {
  CommonImageOptions,
  DebianBaseOptions,
  NodeBaseOptions,
  DockerfileOptions,
  CloneOptions,
  UvProjectOptions,
  NodeProjectOptions,
  ImageJSON,
} from "./image.js";

// references and content tags (reference.ts, hash.ts, context.ts)
export { parseReference, formatReference, DOCKER_HUB_REGISTRY, OCI_LAYOUT_PREFIX, isOciLayoutTarget } from "./reference.js";
export type { ParsedReference, FormatReferenceOptions } from "./reference.js";
export { computeTag, explainTag, diffTagExplanations, TAG_RECIPE_VERSION } from "./hash.js";
export type { ImageLike, TagInput, TagExplanation, TagInputChange, HashOptions, ExplainOptions } from "./hash.js";
export { SourceChangedError } from "./context.js";

// engine, builder registration, config (engine.ts, selection.ts, config.ts, …)
export { ImageBuildEngine, build, init } from "./engine.js";
export type { EngineBuildOptions, EngineImageBuild, EngineBuildHandle, BuildOutcome } from "./engine.js";
// image graphs and many images per run (graph.ts, buildAll.ts, group.ts)
export { chainOf, mapChain, describeChain } from "./graph.js";
export { buildAll, BaseImageFailedError, DEFAULT_BUILD_CONCURRENCY } from "./buildAll.js";
export type { BuildAllOptions, BuildAllResult, BuildAllAction, BuildAllInput } from "./buildAll.js";
export { group, isGroup } from "./group.js";
export type { Group } from "./group.js";
export { registerImageBuilder, unregisterImageBuilder, getInitOptions } from "./selection.js";
export type { InitOptions } from "./selection.js";
export { loadConfig, findProjectDir, CONFIG_FILE_NAME } from "./config.js";
export type { KilnConfig, LoadedConfig } from "./config.js";
export type { CheckerChoice } from "./checkerChoice.js";
export { UnsafeLockDirectoryError } from "./errors.js";

// build secrets (secrets.ts; declared with withCommands(..., { secrets }))
export { MissingSecretError, BuildSecretsNeedBuildKitError } from "./errors.js";
export type { SecretMount } from "./layers.js";
export type { CommandOptions } from "./image.js";

// coordination across hosts: lock providers and check caches (coordination/…; plugins such as @kiln/redis)
export { LeaseLostError, CoordinationUnavailableError } from "./errors.js";
export { CannotBuildError } from "./errors.js";
export { FileLockProvider } from "./coordination/fileLockProvider.js";
export type { TakeFileLock } from "./coordination/fileLockProvider.js";
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

// promotion: copy an absent image from a promoteFrom registry instead of building it (promotion/…)
export { promoteImage } from "./promotion/copy.js";
export type { PromoteImageOptions, PromotedImage } from "./promotion/copy.js";
export { selectPromoteFrom } from "./promotion/select.js";
export type { SelectedPromoteFrom } from "./promotion/select.js";
export { validatePromoteFrom, promoteFromEnv, promotionReference, PROMOTE_FROM_ENV } from "./promotion/sources.js";
export { PromotionFailedError, PromotionSourceMissingError } from "./errors.js";

// base images pinned by digest (pinBase.ts, baseDigest.ts)
export { pinBaseImage, selectPinBase, needsBasePin, needsUvPin, PIN_BASE_ENV } from "./pinBase.js";
export type { PinBaseImageOptions } from "./pinBase.js";
export { resolveBaseDigest, resolveUvImageDigest, clearBaseDigestCache, baseReference, BASE_DIGEST_TTL_MS } from "./baseDigest.js";
export { uvImageReference } from "./pinnedReference.js";
export type { ResolveBaseDigestOptions } from "./baseDigest.js";
export { BaseDigestError, BaseMismatchError } from "./errors.js";
export type { PinBaseOption } from "./image.js";

// why did this rebuild: explain records under .kiln/explain and their diff (explainRecord.ts, explainDiff.ts)
export { readExplainRecords, latestExplainRecord, previousExplainRecord, explainDirectory, EXPLAIN_RECORDS_KEPT } from "./explainRecord.js";
export type { ExplainRecord } from "./explainRecord.js";
export { diffExplainRecords, summarizeExplainDiff, formatExplainDiff } from "./explainDiff.js";
export type { ExplainDiff, InputChange } from "./explainDiff.js";
export { EXPLAIN_RECORDS_ENV } from "./buildReason.js";
export { attachExplainRecord, readAttachedExplainRecord, explainArtifactTag, EXPLAIN_ARTIFACT_TYPE } from "./explainArtifact.js";

// Plugin-author helpers live in `@kiln/core/plugin` (plugin.ts). Deprecated: re-exported here for one
// release so imports from "@kiln/core" keep working; import them from "@kiln/core/plugin" instead.
export * from "./plugin.js";
