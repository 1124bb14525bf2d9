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
export type { ImageChecker, ImageCheckerClass, ImageCheckerLike, ImageBuilder, ImageBuild, BuildImageOptions } from "./builder.js";

// image spec (image.ts, validate.ts, dockerfile.ts) — helper A

// reference, hashing, build context (reference.ts, hash.ts, context.ts) — helper B

// registry client (registry/…) — helper C

// engine, discovery, config, CLI support (engine.ts, discovery.ts, config.ts, …) — helper D
