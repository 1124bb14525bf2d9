/**
 * Typed errors. Every error Kiln throws on purpose is a KilnError with a stable `code`, a `hint`
 * that tells the user what to do next, and an `isInstance` check that works across copies of
 * @kiln/core (a plugin may bundle its own), through a Symbol.for marker rather than instanceof.
 */
import { maskCredentialUrls } from "./credentialUrls.js";

const MARKER = Symbol.for("kiln.error");

export interface KilnErrorOptions {
  hint?: string;
  cause?: unknown;
  /** Extra machine-readable facts (never credentials). */
  details?: Record<string, unknown>;
}

export class KilnError extends Error {
  readonly [MARKER] = true;
  readonly code: string = "KILN_ERROR";
  readonly hint: string | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(message: string, options: KilnErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.hint = options.hint;
    this.details = options.details;
  }

  /** True for any KilnError, including one thrown by another copy of @kiln/core. */
  static isInstance(error: unknown): error is KilnError {
    return typeof error === "object" && error !== null && (error as Record<symbol, unknown>)[MARKER] === true;
  }

  toJSON(): Record<string, unknown> {
    return { name: this.name, code: this.code, message: this.message, hint: this.hint, details: this.details };
  }
}

/** Subclasses share the marker; `isInstance` on a subclass also checks the code. */
function defineError(name: string, code: string) {
  const cls = class extends KilnError {
    override readonly code = code;
    static override isInstance(error: unknown): error is KilnError {
      return KilnError.isInstance(error) && error.code === code;
    }
  };
  Object.defineProperty(cls, "name", { value: name });
  return cls;
}

/** A value the user declared is invalid. `field` names it, `value` is what was given — with the userinfo
 * of any credential-bearing URL masked as `***` there and in the message, hint and details, so a refused
 * credential is never echoed back (credentialUrls.ts). */
export class ValidationError extends KilnError {
  override readonly code: string = "KILN_VALIDATION";
  readonly field: string;
  readonly value: unknown;
  constructor(field: string, value: unknown, reason: string, options: KilnErrorOptions = {}) {
    const shown = maskCredentialData(value);
    const masked: KilnErrorOptions = { ...options };
    if (options.hint !== undefined) masked.hint = maskCredentialUrls(options.hint);
    if (options.details !== undefined) masked.details = maskCredentialData(options.details) as Record<string, unknown>;
    // Masked before describeValue cuts the text, so a cut can never leave half a userinfo unmasked.
    super(maskCredentialUrls(`Invalid ${field} ${describeValue(shown)}: ${reason}`), masked);
    this.field = maskCredentialUrls(field);
    this.value = shown;
  }
  static override isInstance(error: unknown): error is ValidationError {
    return KilnError.isInstance(error) && error.code === "KILN_VALIDATION";
  }
}

/** Strings, and strings inside arrays and plain objects, with credential URLs masked; the same
 * reference when nothing changed. */
function maskCredentialData(value: unknown, depth = 0): unknown {
  if (typeof value === "string") return maskCredentialUrls(value);
  if (depth > 8 || typeof value !== "object" || value === null) return value;
  if (Array.isArray(value)) {
    const items = value.map((v) => maskCredentialData(v, depth + 1));
    return items.some((v, i) => v !== value[i]) ? items : value;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return value;
  try {
    const entries = Object.entries(value).map(([k, v]) => [k, maskCredentialData(v, depth + 1)] as const);
    return entries.some(([k, v]) => v !== (value as Record<string, unknown>)[k]) ? Object.fromEntries(entries) : value;
  } catch {
    return value; // a throwing getter: describing the value must never hide the error being built
  }
}

/** Shows a user's value safely in a one-line message: quoted, control characters escaped, capped. */
export function describeValue(value: unknown): string {
  const text = typeof value === "string" ? value : jsonOrString(value);
  const escaped = JSON.stringify(text.length > 120 ? `${text.slice(0, 117)}...` : text);
  return escaped;
}

/** JSON for plain data; `String(value)` where JSON cannot (BigInt, circular objects, a throwing toJSON),
 * so describing a bad value never hides the error being built. */
function jsonOrString(value: unknown): string {
  try {
    const json = JSON.stringify(value);
    if (json !== undefined) return json;
  } catch {
    // fall through
  }
  try {
    return String(value);
  } catch {
    return Object.prototype.toString.call(value); // e.g. Object.create(null) has no toString
  }
}

export class InvalidReferenceError extends defineError("InvalidReferenceError", "KILN_INVALID_REFERENCE") {}

export class SourceNotFoundError extends defineError("SourceNotFoundError", "KILN_SOURCE_NOT_FOUND") {}
export class UnknownBuilderError extends defineError("UnknownBuilderError", "KILN_UNKNOWN_BUILDER") {}
/** A checker name (build({ checkers }), --checker, KILN_IMAGE_CHECKERS, config) that no installed plugin registers. */
export class UnknownCheckerError extends defineError("UnknownCheckerError", "KILN_UNKNOWN_CHECKER") {}
export class PluginLoadError extends defineError("PluginLoadError", "KILN_PLUGIN_LOAD") {}
export class ConfigError extends defineError("ConfigError", "KILN_CONFIG") {}
export class AuthError extends defineError("AuthError", "KILN_AUTH") {}
export class RateLimitError extends defineError("RateLimitError", "KILN_RATE_LIMIT") {}
export class RegistryError extends defineError("RegistryError", "KILN_REGISTRY") {}
/** A registry request (manifest, blob or token) passed its total deadline: could not tell — never "absent".
 * The hint names the setting (KILN_REGISTRY_TIMEOUT_MS, RegistryClient `timeouts.totalMs`). */
export class RegistryTimeoutError extends defineError("RegistryTimeoutError", "KILN_REGISTRY_TIMEOUT") {}
export class CheckFailedError extends defineError("CheckFailedError", "KILN_CHECK_FAILED") {}
export class BuildFailedError extends defineError("BuildFailedError", "KILN_BUILD_FAILED") {}
export class PushFailedError extends defineError("PushFailedError", "KILN_PUSH_FAILED") {}
export class DaemonUnavailableError extends defineError("DaemonUnavailableError", "KILN_DAEMON_UNAVAILABLE") {}
export class CancelledError extends defineError("CancelledError", "KILN_CANCELLED") {}
/** Bad command-line usage (unknown flag, missing argument): `kiln` exits 2. */
export class UsageError extends defineError("UsageError", "KILN_USAGE") {}
export class SpecLoadError extends defineError("SpecLoadError", "KILN_SPEC_LOAD") {}
/** The build lock directory is not this user's alone (another owner, group/other access, a symlink): it is not used. */
export class UnsafeLockDirectoryError extends defineError("UnsafeLockDirectoryError", "KILN_UNSAFE_LOCK_DIR") {}
/** A copied source file is not what was listed and hashed for the content tag (replaced, changed or
 * removed since): the build stops before anything is pushed. Running the build again hashes anew. */
export class SourceChangedError extends defineError("SourceChangedError", "KILN_SOURCE_CHANGED") {}

/** A build secret the image declares has no value (neither passed to build() nor in the environment),
 * or a `--secret` source could not be read. Names ids, variables and paths — never a value. */
export class MissingSecretError extends defineError("MissingSecretError", "KILN_MISSING_SECRET") {}
/** The image mounts build secrets, which only BuildKit can do; the classic builder was asked for. */
export class BuildSecretsNeedBuildKitError extends defineError("BuildSecretsNeedBuildKitError", "KILN_SECRETS_NEED_BUILDKIT") {}
/** The builder cannot build this image (it names the layer or base it cannot do, e.g. a RUN step for
 * a daemonless builder); `canBuild` gives the same reason before anything is done. */
export class CannotBuildError extends defineError("CannotBuildError", "KILN_CANNOT_BUILD") {}

/** The build lease ended (expired, taken over by another host, or unconfirmable once it ran out)
 * before the push: this holder must not push. Thrown by `BuildImageOptions.beforePush`. */
export class LeaseLostError extends defineError("LeaseLostError", "KILN_LEASE_LOST") {}
/** A shared lock provider or check cache (e.g. Redis) cannot be reached; in strict mode the build
 * fails with it instead of falling back to the per-host lock. */
export class CoordinationUnavailableError extends defineError("CoordinationUnavailableError", "KILN_COORDINATION_UNAVAILABLE") {}
/** pinBase is on and the base image's digest could not be resolved: its registry is unreachable,
 * refused the credentials, or does not hold the reference. Never silently built unpinned. */
export class BaseDigestError extends defineError("BaseDigestError", "KILN_BASE_DIGEST") {}
/** The base an image is to be built on came back under another content tag than the one hashed into
 * the image's own tag (e.g. its base moved between two digest lookups): never built on it. */
export class BaseMismatchError extends defineError("BaseMismatchError", "KILN_BASE_MISMATCH") {}
/** Promotion (copying an image from a `promoteFrom` registry instead of building it) failed: the
 * transfer, the target's answer, or a blob whose bytes do not hash to their digest (`details.reason`
 * "digest-mismatch"). Nothing is tagged at the target when it is thrown. */
export class PromotionFailedError extends defineError("PromotionFailedError", "KILN_PROMOTION_FAILED") {}
/** The promotion source does not hold the image (or not for every requested platform). */
export class PromotionSourceMissingError extends defineError("PromotionSourceMissingError", "KILN_PROMOTION_SOURCE_MISSING") {}
