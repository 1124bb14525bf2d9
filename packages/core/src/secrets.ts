/**
 * Build secrets at build time. An image only declares secret ids (and where they are mounted); the
 * values come from the caller (`build(image, { secrets })`, `kiln build --secret`) or from the
 * environment variable named like the id. They never enter the spec, the tag, events or errors:
 * `redactBuildSecrets` replaces every resolved value in text the engine passes on.
 */
import { KilnError, MissingSecretError, ValidationError } from "./errors.js";
import type { BuildEvent } from "./events.js";
import { specOf, type ImageLike } from "./hash.js";
import { redact as scrubSecrets } from "./registry/credentials.js";

/** Every secret id the image's layers declare, each once, in declaration order. */
export function secretIdsOf(image: ImageLike): string[] {
  const ids = new Set<string>();
  const spec = specOf(image);
  if (spec.base.kind === "dockerfile") for (const id of spec.base.secrets ?? []) ids.add(id);
  for (const layer of spec.layers) {
    if (layer.kind === "commands") for (const secret of layer.secrets ?? []) ids.add(secret.id);
  }
  return [...ids];
}

type SecretSource = Readonly<Record<string, string | undefined>>;

/**
 * The value of every secret the image declares: `provided[id]`, else `env[id]`. Each must be a
 * non-empty string, else a MissingSecretError naming every missing id (never a value). Provided ids
 * the image does not declare are ignored (one secrets map may serve many images).
 */
export function resolveBuildSecrets(image: ImageLike, provided?: Readonly<Record<string, string>>, env: SecretSource = process.env): Map<string, string> {
  if (provided !== undefined && (typeof provided !== "object" || provided === null || Array.isArray(provided))) {
    // Show the kind only: a misplaced argument may be the secret itself.
    throw new ValidationError(
      "secrets",
      Array.isArray(provided) ? "an array" : provided === null ? "null" : typeof provided,
      "expected an object of { ID: value }",
      {
        hint: "pass { secrets: { NPM_TOKEN: process.env.NPM_TOKEN } }",
      },
    );
  }
  const resolved = new Map<string, string>();
  const missing: Array<{ id: string; reason: string }> = [];
  for (const id of secretIdsOf(image)) {
    // Own properties only: an id such as "constructor" must not find Object.prototype's.
    const value = provided !== undefined && Object.hasOwn(provided, id) ? provided[id] : Object.hasOwn(env, id) ? env[id] : undefined;
    if (value === undefined || value === null) missing.push({ id, reason: "not set" });
    else if (typeof value !== "string") missing.push({ id, reason: "not a string" });
    else if (value === "") missing.push({ id, reason: "empty" });
    else resolved.set(id, value);
  }
  if (missing.length > 0) {
    const ids = missing.map((m) => m.id);
    const first = ids[0]!;
    throw new MissingSecretError(`Build secret${ids.length > 1 ? "s" : ""} without a value: ${missing.map((m) => `${m.id} (${m.reason})`).join(", ")}`, {
      hint: `pass { secrets: { ${first}: value } } to build(), \`--secret id=${first},env=VAR\` to kiln build, or set the environment variable ${first}`,
      details: { missing: ids },
    });
  }
  return resolved;
}

/** Shorter needles are never scrubbed (replacing every "ab" would garble logs, and cannot hide much). */
const MIN_NEEDLE = 3;

/**
 * What to look for: each value, and each line of a multi-line value (a pip.conf or .npmrc is echoed
 * line by line, and a file's trailing newline never appears in a log line). Longest first, so a value
 * that contains another is replaced whole.
 */
function needlesOf(values: Iterable<string>): string[] {
  const needles = new Set<string>();
  for (const value of values) {
    if (typeof value !== "string") continue;
    if (value.length >= MIN_NEEDLE) needles.add(value);
    for (const line of value.split(/\r?\n/)) {
      const trimmed = line.trim();
      if (trimmed.length >= MIN_NEEDLE) needles.add(trimmed);
    }
  }
  return [...needles].sort((a, b) => b.length - a.length);
}

/** `text` with every occurrence of a secret value (or of one line of a multi-line value) replaced by `***`. */
export function redactBuildSecrets(text: string, values: Iterable<string>): string {
  return scrubSecrets(text, needlesOf(values));
}

/** A reusable redactor for one build's values (the needles are computed once). */
export function secretRedactor(values: Iterable<string>): (text: string) => string {
  const needles = needlesOf(values);
  return needles.length === 0 ? (text) => text : (text) => scrubSecrets(text, needles);
}

/** Plain data (events, error details) with every string redacted; other objects are left alone. */
function redactData(value: unknown, redact: (text: string) => string, depth = 0): unknown {
  if (typeof value === "string") return redact(value);
  if (depth > 8 || typeof value !== "object" || value === null) return value;
  if (Array.isArray(value)) return value.map((v) => redactData(v, redact, depth + 1));
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactData(v, redact, depth + 1)]));
}

/** The event with every string in it redacted. */
export function redactEventSecrets(event: BuildEvent, redact: (text: string) => string): BuildEvent {
  return redactData(event, redact) as BuildEvent;
}

/**
 * Redacts an error in place, and its `cause` chain: message, stack, and for a KilnError its hint and
 * details. In place, because the error object is what callers (and every caller sharing the build)
 * receive; returns it for convenience.
 */
export function redactErrorSecrets<T>(error: T, redact: (text: string) => string): T {
  const seen = new Set<unknown>();
  let current: unknown = error;
  for (let depth = 0; depth < 8 && typeof current === "object" && current !== null && !seen.has(current); depth++) {
    seen.add(current);
    const e = current as Error & { hint?: unknown; details?: unknown; cause?: unknown };
    try {
      if (typeof e.message === "string") e.message = redact(e.message);
      if (typeof e.stack === "string") e.stack = redact(e.stack);
      if (KilnError.isInstance(e)) {
        if (typeof e.hint === "string") Object.defineProperty(e, "hint", { value: redact(e.hint), enumerable: true, configurable: true });
        if (e.details !== undefined) Object.defineProperty(e, "details", { value: redactData(e.details, redact), enumerable: true, configurable: true });
      }
    } catch {
      // A frozen or exotic error: nothing more can be done in place.
    }
    current = e.cause;
  }
  return error;
}
