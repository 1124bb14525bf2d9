/**
 * Running checkers. A builder's `getCheckers()` may return instances or — the reference guide's
 * shape — classes with a static `imageExists`; a class with only an instance method is created
 * with no arguments. They run in order: the first URI wins; a checker that throws or returns null
 * passes to the next.
 *
 * Cancellation: each checker gets `{ signal }` as its 4th argument so it can abort its own request;
 * the wait is also raced against the signal, so a checker that ignores it is abandoned at once.
 * Either way an aborted check ends as a CancelledError — never as "absent" (which would build).
 */
import type { ImageChecker, ImageCheckerLike } from "./builder.js";
import { CancelledError, CheckFailedError, KilnError } from "./errors.js";
import { emit, type EventListener, type SerializedError } from "./events.js";
import type { Architecture } from "./layers.js";
import { serializeError } from "./redact.js";
import { cancelledError, raceAbort } from "./registry/abort.js";
import type { RegistryClient } from "./registry/client.js";

export interface NamedChecker {
  name: string;
  imageExists: ImageChecker["imageExists"];
}

/** Normalises any accepted checker shape to a named `imageExists` function. */
export function toNamedChecker(checker: ImageCheckerLike | (new () => ImageChecker)): NamedChecker {
  if (typeof checker === "function") {
    const cls = checker as unknown as { name: string; imageExists?: ImageChecker["imageExists"]; prototype?: Partial<ImageChecker> };
    if (typeof cls.imageExists === "function") return { name: cls.name || "checker", imageExists: cls.imageExists.bind(cls) };
    if (typeof cls.prototype?.imageExists === "function") {
      const instance = new (checker as new () => ImageChecker)();
      return { name: cls.name || "checker", imageExists: instance.imageExists.bind(instance) };
    }
  } else if (checker && typeof (checker as ImageChecker).imageExists === "function") {
    const instance = checker as ImageChecker & { name?: unknown };
    const name = typeof instance.name === "string" && instance.name ? instance.name : instance.constructor?.name && instance.constructor.name !== "Object" ? instance.constructor.name : "checker";
    return { name, imageExists: instance.imageExists.bind(instance) };
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
  /** Every checker erroring becomes a CheckFailedError instead of "absent". */
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
  for (const checker of checkers) {
    if (signal?.aborted) throw cancelled(checker.name);
    emit(options.onEvent, { type: "check.start", image: options.image, checker: checker.name, platforms: [...platforms] });
    try {
      // `{ signal }` only when there is one, so a signal-less call looks exactly as it always did.
      const pending = signal ? checker.imageExists(repository, tag, [...platforms], { signal }) : checker.imageExists(repository, tag, [...platforms]);
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
  if (options.strict && checkers.length > 0 && outcome.results.every((r) => r.result === "error")) {
    const reasons = outcome.results.map((r) => `${r.checker}: ${r.error?.message}`).join("; ");
    throw new CheckFailedError(`Every checker failed for ${options.image} (strict mode): ${reasons}`, {
      hint: "Fix the checkers' access to the registry (credentials, network), or run without strict mode (KILN_STRICT=0) to build anyway.",
      details: { image: options.image, results: outcome.results },
    });
  }
  return outcome;
}

/** True when a reference's first path component names a registry host (a dot, a port, or localhost). */
function namesRegistryHost(uri: string): boolean {
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
  digestClient ??= new (await import("./registry/client.js")).RegistryClient({ retry: { retries: 1, baseDelayMs: 200 }, timeouts: { connectMs: 3_000, idleMs: 10_000, totalMs: 15_000 } });
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
