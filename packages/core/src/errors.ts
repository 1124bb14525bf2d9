/**
 * Typed errors. Every error Kiln throws on purpose is a KilnError with a stable `code`, a `hint`
 * that tells the user what to do next, and an `isInstance` check that works across copies of
 * @kiln/core (a plugin may bundle its own), through a Symbol.for marker rather than instanceof.
 */
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

/** A value the user declared is invalid. `field` names it, `value` is what was given. */
export class ValidationError extends KilnError {
  override readonly code: string = "KILN_VALIDATION";
  readonly field: string;
  readonly value: unknown;
  constructor(field: string, value: unknown, reason: string, options: KilnErrorOptions = {}) {
    super(`Invalid ${field} ${describeValue(value)}: ${reason}`, options);
    this.field = field;
    this.value = value;
  }
  static override isInstance(error: unknown): error is ValidationError {
    return KilnError.isInstance(error) && error.code === "KILN_VALIDATION";
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
export class PluginLoadError extends defineError("PluginLoadError", "KILN_PLUGIN_LOAD") {}
export class ConfigError extends defineError("ConfigError", "KILN_CONFIG") {}
export class AuthError extends defineError("AuthError", "KILN_AUTH") {}
export class RateLimitError extends defineError("RateLimitError", "KILN_RATE_LIMIT") {}
export class RegistryError extends defineError("RegistryError", "KILN_REGISTRY") {}
export class CheckFailedError extends defineError("CheckFailedError", "KILN_CHECK_FAILED") {}
export class BuildFailedError extends defineError("BuildFailedError", "KILN_BUILD_FAILED") {}
export class PushFailedError extends defineError("PushFailedError", "KILN_PUSH_FAILED") {}
export class DaemonUnavailableError extends defineError("DaemonUnavailableError", "KILN_DAEMON_UNAVAILABLE") {}
export class CancelledError extends defineError("CancelledError", "KILN_CANCELLED") {}
export class SpecLoadError extends defineError("SpecLoadError", "KILN_SPEC_LOAD") {}

/** A build secret the image declares has no value (neither passed to build() nor in the environment),
 * or a `--secret` source could not be read. Names ids, variables and paths — never a value. */
export class MissingSecretError extends defineError("MissingSecretError", "KILN_MISSING_SECRET") {}
/** The image mounts build secrets, which only BuildKit can do; the classic builder was asked for. */
export class BuildSecretsNeedBuildKitError extends defineError("BuildSecretsNeedBuildKitError", "KILN_SECRETS_NEED_BUILDKIT") {}
