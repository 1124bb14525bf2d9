/**
 * Running checkers. A builder's `getCheckers()` (or a plugin's registered export) may return
 * instances or classes. Every class is normalised here, once: a class with an instance
 * `imageExists` is answered by its one default instance (`defaultCheckerInstance`: created with no
 * arguments, cached per class, so its connections and tokens are reused — the same instance a
 * plugin's static `imageExists` delegates to), whose `name` and `answersFor` count; a class with
 * only a static `imageExists` (the reference guide's shape) is called as it is. They run in order:
 * the first URI wins; a checker that throws or returns null passes to the next.
 *
 * Progress: each checker gets `{ onEvent }` (with the signal, its 4th argument) to report what it waits
 * for — a registry's retries and rate limits — as events of the image checked.
 *
 * Cancellation: each checker gets `{ signal }` as its 4th argument so it can abort its own request;
 * the wait is also raced against the signal, so a checker that ignores it is abandoned at once.
 * Either way an aborted check ends as a CancelledError — never as "absent" (which would build).
 */
import type { ImageChecker, ImageCheckerLike } from "./builder.js";
import { CancelledError, CheckFailedError, KilnError } from "./errors.js";
import { emit, type BuildEventInput, type EventListener, type SerializedError } from "./events.js";
import type { Architecture } from "./layers.js";
import { serializeError } from "./redact.js";
import { isOciLayoutTarget } from "./reference.js";
import { cancelledError, raceAbort } from "./registry/abort.js";
import type { RegistryClient } from "./registry/client.js";

export interface NamedChecker {
  name: string;
  imageExists: ImageChecker["imageExists"];
  /** Whether it can speak for this repository's registry (absent: every registry). */
  answersFor?: (repository: string) => boolean;
}

/** One default-constructed instance per checker class (see defaultCheckerInstance). */
const defaultInstances = new WeakMap<object, ImageChecker>();

/**
 * The one instance of a checker class created with no arguments, cached per class: what the
 * engine asks for a class it is given, and what a plugin's static `imageExists` (the guide's class
 * form) delegates to — `static imageExists(...a) { return defaultCheckerInstance(MyChecker).imageExists(...a); }`.
 */
export function defaultCheckerInstance<T extends ImageChecker>(cls: new () => T): T {
  let instance = defaultInstances.get(cls) as T | undefined;
  if (!instance) {
    instance = new cls();
    defaultInstances.set(cls, instance);
  }
  return instance;
}

/** An instance's own `name` when it has one, else its class name. */
function ownNameOf(instance: object): string | undefined {
  const own = (instance as { name?: unknown }).name;
  if (typeof own === "string" && own) return own;
  const className = (instance as { constructor?: { name?: string } }).constructor?.name;
  return className && className !== "Object" ? className : undefined;
}

/** The checker's `answersFor`, bound, when it has one. */
function answersForOf(target: object): NamedChecker["answersFor"] {
  const answersFor = (target as { answersFor?: unknown }).answersFor;
  return typeof answersFor === "function" ? (repository: string) => Boolean(answersFor.call(target, repository)) : undefined;
}

function named(name: string, imageExists: ImageChecker["imageExists"], answersFor: NamedChecker["answersFor"]): NamedChecker {
  return answersFor ? { name, imageExists, answersFor } : { name, imageExists };
}

/**
 * Normalises any accepted checker shape to a named `imageExists` function. `registeredName` (the
 * name a plugin registers it under) is what events and the live view show; without it, an
 * instance's own `name`, else the class name.
 */
export function toNamedChecker(checker: ImageCheckerLike | (new () => ImageChecker), registeredName?: string): NamedChecker {
  if (typeof checker === "function") {
    const cls = checker as unknown as { name: string; imageExists?: ImageChecker["imageExists"]; prototype?: Partial<ImageChecker> };
    const staticForm = typeof cls.imageExists === "function";
    if (typeof cls.prototype?.imageExists === "function") {
      let instance: ImageChecker | undefined;
      try {
        instance = defaultCheckerInstance(checker as new () => ImageChecker);
      } catch (error) {
        // A class that cannot be created without arguments may still answer through its static form.
        if (!staticForm) throw error;
      }
      if (instance) return named(registeredName ?? ownNameOf(instance) ?? "checker", instance.imageExists.bind(instance), answersForOf(instance));
    }
    if (staticForm) return named(registeredName ?? (cls.name || "checker"), cls.imageExists!.bind(cls), answersForOf(cls));
  } else if (checker && typeof (checker as ImageChecker).imageExists === "function") {
    const instance = checker as ImageChecker;
    return named(registeredName ?? ownNameOf(instance) ?? "checker", instance.imageExists.bind(instance), answersForOf(instance));
  }
  throw new KilnError(`Not an image checker: ${String(checker)}`, {
    hint: "getCheckers() must return objects with imageExists(repository, tag, arch) or classes with a static imageExists.",
  });
}

export interface CheckOutcome {
  /** The URI of the first checker that found the image, else null. */
  uri: string | null;
  /** Name of the checker that found it. */
  foundBy?: string;
  results: Array<{ checker: string; result: "present" | "absent" | "error"; uri?: string; error?: SerializedError }>;
}

export interface RunCheckersOptions {
  /** The image URI, for events. */
  image: string;
  onEvent?: EventListener;
  signal?: AbortSignal;
  /**
   * Strict mode: when no checker found the image, a checker that speaks for its registry and could
   * not tell (threw), or no checker speaking for that registry at all, is a CheckFailedError
   * instead of "absent". Checkers whose `answersFor` declines the repository are not asked.
   */
  strict?: boolean;
}

/** Runs checkers in order until one finds the image. */
export async function runCheckers(
  checkers: readonly NamedChecker[],
  repository: string,
  tag: string,
  platforms: readonly Architecture[],
  options: RunCheckersOptions,
): Promise<CheckOutcome> {
  const outcome: CheckOutcome = { uri: null, results: [] };
  const { signal } = options;
  const cancelled = (checker: string) => cancelledError(`Check of ${options.image} (${checker})`, signal, { image: options.image, checker });
  // What a checker reports (a registry's retries and rate limits) is about the image checked: the
  // live view draws it in that image's block, whatever reference (a child's digest) the request named.
  const listener = options.onEvent;
  const report: EventListener | undefined = listener && ((event) => emit(listener, { ...event, image: options.image } as BuildEventInput));
  let asked = 0;
  for (const checker of checkers) {
    if (signal?.aborted) throw cancelled(checker.name);
    // Not its registry: its null would be no answer, not "absent" (nor, in strict mode, "could not tell").
    if (checker.answersFor && !checker.answersFor(repository)) continue;
    asked++;
    emit(options.onEvent, { type: "check.start", image: options.image, checker: checker.name, platforms: [...platforms] });
    try {
      // Options only when there are some, so a call without them looks exactly as it always did.
      const checkOptions = { ...(signal ? { signal } : {}), ...(report ? { onEvent: report } : {}) };
      const pending =
        signal || report ? checker.imageExists(repository, tag, [...platforms], checkOptions) : checker.imageExists(repository, tag, [...platforms]);
      const uri = await raceAbort(Promise.resolve(pending), signal, () => cancelled(checker.name));
      // Whatever a checker answers after the abort (a null from a request it cut short) is no answer.
      if (signal?.aborted) throw cancelled(checker.name);
      if (typeof uri === "string" && uri.length > 0) {
        outcome.results.push({ checker: checker.name, result: "present", uri });
        emit(options.onEvent, { type: "check.result", image: options.image, checker: checker.name, result: "present", uri });
        outcome.uri = uri;
        outcome.foundBy = checker.name;
        return outcome;
      }
      outcome.results.push({ checker: checker.name, result: "absent" });
      emit(options.onEvent, { type: "check.result", image: options.image, checker: checker.name, result: "absent" });
    } catch (error) {
      // Cancellation ends the whole check; it is not one checker's "error" to pass over.
      if (signal?.aborted) throw CancelledError.isInstance(error) ? error : cancelled(checker.name);
      const serialized = serializeError(error);
      outcome.results.push({ checker: checker.name, result: "error", error: serialized });
      emit(options.onEvent, { type: "check.result", image: options.image, checker: checker.name, result: "error", error: serialized });
    }
  }
  const failed = outcome.results.filter((r) => r.result === "error");
  if (options.strict && checkers.length > 0 && (failed.length > 0 || asked === 0)) {
    const reasons =
      failed.length > 0
        ? `${failed.map((r) => `${r.checker}: ${r.error?.message}`).join("; ")}`
        : `none of the checkers (${checkers.map((c) => c.name).join(", ")}) answers for ${repository}`;
    throw new CheckFailedError(`Could not tell whether ${options.image} exists (strict mode): ${reasons}`, {
      hint: "Fix the checkers' access to the registry (credentials, network), or run without strict mode (KILN_STRICT=0) to build anyway.",
      details: { image: options.image, results: outcome.results },
    });
  }
  return outcome;
}

/** True when a reference's first path component names a registry host (a dot, a port, or localhost). */
function namesRegistryHost(uri: string): boolean {
  if (isOciLayoutTarget(uri)) return false; // a layout directory on this machine (oci:<dir>), no registry
  const slash = uri.indexOf("/");
  if (slash < 0) return false;
  const first = uri.slice(0, slash);
  return first.includes(".") || first.includes(":") || first === "localhost";
}

let digestClient: RegistryClient | undefined;

/**
 * The manifest (or index) digest of an image a checker found, so a found image reports the same
 * digest its build reported (the pushed manifest's `Docker-Content-Digest`). Registry images only:
 * a local-only image's build reports no digest, so neither does finding it. Best effort — the image
 * was found; a registry that cannot answer the HEAD leaves the digest out rather than failing.
 */
export async function digestOfFound(uri: string, signal?: AbortSignal): Promise<string | undefined> {
  const pinned = /@(sha256:[0-9a-f]{64})$/.exec(uri);
  if (pinned) return pinned[1];
  if (!namesRegistryHost(uri)) return undefined;
  // Few retries and short deadlines: this is an extra answer, not the check itself.
  // Loaded on demand: the registry client is only needed once a registry image was found.
  const cancelled = () => cancelledError(`Digest lookup of ${uri}`, signal, { image: uri });
  if (signal?.aborted) throw cancelled();
  digestClient ??= new (await import("./registry/client.js")).RegistryClient({
    retry: { retries: 1, baseDelayMs: 200 },
    timeouts: { connectMs: 3_000, idleMs: 10_000, totalMs: 15_000 },
  });
  // The signal aborts the request itself (socket closed, no retry); the race also covers the
  // moments the client waits on something it cannot cancel (a credential helper).
  const head = digestClient.headManifest(uri, { signal }).then(
    (h) => h?.digest,
    () => {
      if (signal?.aborted) throw cancelled();
      return undefined;
    },
  );
  return raceAbort(head, signal, cancelled);
}
