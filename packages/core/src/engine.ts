/**
 * The image build engine: check first, build only what no checker has, never twice.
 *
 *  1. The default registry (init > KILN_IMAGE_REGISTRY > config) is applied to an image declared
 *     without a registry, as `image.clone({ registry })` — the content tag does not change.
 *  2. An image that needs no build (fromBase without layers) is returned as is.
 *  3. Unless `force` or tag `latest`: the checker chain (build({ checkers }) > init > env > config,
 *     else the selected builder's own) runs in order; the first URI wins; a checker that throws or
 *     returns null passes to the next, one whose `answersFor` declines the registry is not asked.
 *     Strict mode turns "not found, and a checker speaking for the registry could not tell" into a
 *     CheckFailedError.
 *  4. `dryRun` stops here and returns the URI the build would produce — the builder is never
 *     called, whatever kind of image it is.
 *  5. Otherwise a per-image lock file is taken (another process building the same image is waited
 *     for), the check runs again under the lock (unless skipped as in 3: another process may have
 *     pushed the image meanwhile), and the builder builds and pushes. Build secrets are resolved
 *     just before (MissingSecretError if one has no value), handed to the builder, and their values
 *     redacted from every event and error the builder produces.
 *     Promotion (promotion/engineStep.ts): with `promoteFrom` registries (build > init >
 *     KILN_PROMOTE_FROM > config), an image still absent under the lock is first looked for in each
 *     of them and copied from the first that holds it for every platform; only if none does (or the
 *     copy fails, when not strict) does the builder run. A dry run reports "would-promote".
 *
 * Concurrent calls for the same image in one process share one build (dedupe.ts).
 * An image built on a Kiln image (graph.ts) has that base built first, through build() itself — same
 * checks, locks and dedupe — and its FROM pointed at the base's URI (graphBuild.ts); many images at
 * once: buildAll.ts.
 *
 * With pinBase on (pinBase.ts) the base reference is resolved to its digest before anything else
 * uses the tag. Every tag built, found or promoted has its explain inputs recorded under the
 * project's .kiln/explain (and, once pushed, next to the image); an image whose name had another tag
 * gets a `build.reason` event before it is built (buildReason.ts).
 *
 * Across hosts (coordination/): a shared check cache answers before the checkers (and remembers
 * their answer and the pushed digest), and the lock of step 5 is a lease from the selected lock
 * provider — renewed while building, confirmed by the builder right before it pushes
 * (`beforePush`), its fencing token handed to the builder. A build whose lease was lost before the
 * push starts over (its check then finds what the new holder pushed).
 */
import { createHash, randomBytes } from "node:crypto";
import type { ImageBuild, ImageBuilder } from "./builder.js";
import { digestOfFound, runCheckers } from "./checkers.js";
import type { CheckerChoice } from "./checkerChoice.js";
import { selectCheckers } from "./checkerSelection.js";
import { rejectUnknownKeys } from "./optionKeys.js";
import { optionsObject } from "./validate.js";
import { loadConfig } from "./config.js";
import { SharedWork } from "./dedupe.js";
import { BuildFailedError, CancelledError, CannotBuildError, KilnError, LeaseLostError } from "./errors.js";
import { BuildCoordination, type CoordinatedCheck } from "./coordination/buildCoordination.js";
import { FILE_LOCK_PROVIDER, selectCheckCache, selectLockProvider } from "./coordination/select.js";
import type { CheckCache, LockProvider } from "./coordination/types.js";
import { emit, redactingListener, type EventListener } from "./events.js";
import type { Image } from "./image.js";
import type { Architecture } from "./layers.js";
import { acquireImageLock, lockDirectory } from "./lock.js";
import { redactSecrets, serializeError } from "./redact.js";
import { pinSources } from "./snapshot.js";
import { BuildHistory } from "./buildReason.js";
import { needsBasePin, pinBaseImage, selectPinBase } from "./pinBase.js";
import { checkBasePlatforms, withDefaultRegistry } from "./graph.js";
import { resolveKilnBase, type BaseBuilder } from "./graphBuild.js";
import { redactErrorSecrets, redactEventSecrets, resolveBuildSecrets, secretRedactor } from "./secrets.js";
import { activateCredentialProviders } from "./discovery.js";
import { PromotionStep } from "./promotion/engineStep.js";
import { selectPromoteFrom } from "./promotion/select.js";
import { getDiscovery, init as initSelection, resolveProjectDir, selectBuilder, selectRegistry, selectStrict, type InitOptions } from "./selection.js";

export interface EngineBuildOptions {
  /** Builder name or instance for this call (beats init / env / config). */
  builder?: string | ImageBuilder;
  /** Skip the existence check and build. */
  force?: boolean;
  /** Check, but never build or push; return the URI that would be produced. */
  dryRun?: boolean;
  /** False: return at once with a handle whose `wait()` resolves when done. Default true. */
  wait?: boolean;
  signal?: AbortSignal;
  onEvent?: EventListener;
  /**
   * No checker found the image and one that speaks for its registry could not tell (or none speaks
   * for it): fail instead of building (also KILN_STRICT=1).
   */
  strict?: boolean;
  /**
   * The checkers to ask, in order, by registered name (`kiln plugins` lists them) or as checkers
   * (beats init({ imageCheckers }) / KILN_IMAGE_CHECKERS / config); unset: the builder's own.
   */
  checkers?: readonly CheckerChoice[];
  /** Project whose config/plugins are used (default: init's, else nearest package.json). */
  projectDir?: string;
  /**
   * Values of the image's build secrets by id (ids the image does not declare are ignored); a declared
   * id missing here is read from the environment variable of that name. Resolved only when the builder
   * is about to run (a found image or a dry run needs none), passed to the builder, and redacted from
   * every event and error of the build. Never part of the tag; concurrent calls share a build only
   * when they pass the same values (compared by a per-process salted digest).
   */
  secrets?: Readonly<Record<string, string>>;
  /** Who hands out the build lease for this call: "file" (per host), a plugin's name ("redis") or a LockProvider (beats init / KILN_LOCK_PROVIDER / config). */
  lockProvider?: string | LockProvider;
  /** The shared check cache for this call: "none", a plugin's name ("redis") or a CheckCache (beats init / KILN_CHECK_CACHE / config). */
  checkCache?: string | CheckCache;
  /**
   * Registries an absent image is copied from instead of rebuilt, in order (`["ghcr.io/acme-staging"]`
   * looks for `ghcr.io/acme-staging/<name>:<tag>`); beats init / KILN_PROMOTE_FROM / config; `[]`: none.
   */
  promoteFrom?: readonly string[];
  /**
   * Resolve the base image to its registry digest before the tag is computed (tag and `FROM ref@digest`
   * change when the base moves); beats init / KILN_PIN_BASE / config; an image's own pinBase beats it.
   */
  pinBase?: boolean;
}

/** Every key of EngineBuildOptions: any other is a typo (`{ dryrun: true }` must not build). */
export const BUILD_OPTION_KEYS: readonly (keyof EngineBuildOptions)[] = [
  "builder",
  "force",
  "dryRun",
  "wait",
  "signal",
  "onEvent",
  "strict",
  "checkers",
  "projectDir",
  "secrets",
  "lockProvider",
  "checkCache",
  "promoteFrom",
  "pinBase",
];

export type BuildOutcome =
  /** A checker found the image; nothing was built. */
  | "found"
  /** The builder built (and pushed) it. */
  | "built"
  /** Dry run: it would be built. */
  | "would-build"
  /** fromBase without layers: the base image is used as is. */
  | "not-needed"
  /** Copied from a promoteFrom registry instead of built (`promotedFrom` names the source). */
  | "promoted"
  /** Dry run: it would be copied from `promotedFrom`. */
  | "would-promote";

export interface EngineImageBuild extends ImageBuild {
  outcome: BuildOutcome;
  /** The checker that found the image, for outcome "found". */
  foundBy?: string;
  builder?: string;
  /** The source reference, for outcomes "promoted" and "would-promote". */
  promotedFrom?: string;
}

export interface EngineBuildHandle extends ImageBuild {
  /** The URI the image will have (the builder may report another one on completion). */
  uri: string;
  wait: () => Promise<EngineImageBuild>;
}

const shared = new SharedWork<EngineImageBuild>();

/**
 * The key two builds of "the same image" share: uri + platforms + mode (a dry run never stands in for
 * a build), and whatever else changes what the call does — the builder asked for, strict checking (an
 * explicit `false` overrides KILN_STRICT, so it differs from "not given"), the project whose config
 * applies, the build secrets passed and the lock provider and check cache chosen — so a joiner never
 * silently gets another caller's options.
 */
export function buildKey(
  image: Image,
  options: {
    dryRun?: boolean;
    force?: boolean;
    builder?: string | ImageBuilder;
    strict?: boolean;
    projectDir?: string;
    checkers?: readonly CheckerChoice[];
    secrets?: Readonly<Record<string, string>>;
    lockProvider?: string | LockProvider;
    checkCache?: string | CheckCache;
    promoteFrom?: readonly string[];
  } = {},
): string {
  const platforms = [...image.platform].sort().join(",");
  const mode = options.dryRun ? "dry" : options.force ? "force" : "build";
  const strict = options.strict === undefined ? "" : `strict=${options.strict}`;
  const checkers =
    options.checkers === undefined
      ? ""
      : `checkers=${options.checkers.map((c) => (typeof c === "string" ? `name:${c}` : builderIdentity(c as unknown as ImageBuilder))).join(",")}`;
  // Another lock provider or cache is another coordination: a joiner must not get a build that used other ones.
  const coordination =
    options.lockProvider === undefined && options.checkCache === undefined
      ? ""
      : `lock=${builderIdentity(options.lockProvider)};cache=${builderIdentity(options.checkCache)}`;
  const promoteFrom = options.promoteFrom === undefined ? "" : `promote=${options.promoteFrom.join(",")}`;
  return [
    image.uri,
    platforms,
    mode,
    builderIdentity(options.builder),
    strict,
    options.projectDir ?? "",
    secretsIdentity(options.secrets),
    checkers,
    coordination,
    promoteFrom,
  ].join("|");
}

/** Per process, so the in-memory key never holds a value nor a digest comparable across processes. */
const SECRETS_KEY_SALT = randomBytes(16);
function secretsIdentity(secrets: Readonly<Record<string, string>> | undefined): string {
  if (secrets === undefined) return "";
  const hash = createHash("sha256").update(SECRETS_KEY_SALT);
  for (const id of Object.keys(secrets).sort()) hash.update(`${id.length}:${id}${String(secrets[id]).length}:${String(secrets[id])}`);
  return `secrets:${hash.digest("hex").slice(0, 32)}`;
}

const builderIds = new WeakMap<object, number>();
let nextBuilderId = 1;
/** A builder (checker, lock provider, cache) name as given, or a per-instance number (two instances are two builders). */
function builderIdentity(builder: string | object | undefined): string {
  if (builder === undefined) return "";
  if (typeof builder === "string") return `name:${builder}`;
  let id = builderIds.get(builder);
  if (id === undefined) builderIds.set(builder, (id = nextBuilderId++));
  return `instance:${id}`;
}

/** `<registry>/<name>` — what checkers receive as `repository`. */
export function repositoryOf(image: Image): string {
  return image.registry ? `${image.registry}/${image.name}` : image.name;
}

async function runBuild(image: Image, options: EngineBuildOptions, signal: AbortSignal, onEvent: EventListener): Promise<EngineImageBuild> {
  const started = Date.now();
  const projectDir = resolveProjectDir(options.projectDir);
  const config = loadConfig(projectDir);
  const strict = selectStrict(options.strict, config);
  const uri = image.uri;
  const dryRun = options.dryRun ?? false;
  const platforms: Architecture[] = [...image.platform];
  const history = new BuildHistory(image, projectDir, onEvent);
  const done = (result: EngineImageBuild, built: boolean): EngineImageBuild => {
    // What the next run compares against (explainRecord.ts): every tag built, found or promoted.
    if (result.outcome === "found" || result.outcome === "built" || result.outcome === "promoted") history.record(result);
    emit(onEvent, {
      type: "done",
      image: uri,
      uri: result.uri ?? uri,
      durationMs: Date.now() - started,
      built,
      dryRun,
      ...(result.digest ? { digest: result.digest } : {}),
      ...(result.promotedFrom ? { promotedFrom: result.promotedFrom } : {}),
    });
    return result;
  };

  if (!image.needsBuild) {
    emit(onEvent, { type: "check.skipped", image: uri, reason: "no-build-needed" });
    return done({ uri, outcome: "not-needed" }, false);
  }

  const selected = await selectBuilder(options.builder, projectDir, config, image);
  // A builder chosen by name or instance that cannot build this image fails now, with its reason.
  const canBuild = selected.builder.canBuild?.(image);
  if (canBuild && !canBuild.ok) {
    throw new CannotBuildError(`The image builder ${selected.name} cannot build ${uri}: ${canBuild.reason}`, {
      hint: "Choose a builder that can (or leave the builder unset so Kiln picks the first installed one that can).",
      details: { image: uri, builder: selected.name, source: selected.source, reason: canBuild.reason },
    });
  }
  // Plugins' credential providers (e.g. ECR) must be registered before checkers or pushes reach a registry.
  for (const problem of await activateCredentialProviders(getDiscovery(projectDir))) {
    // A broken provider would otherwise surface later as a misleading "run docker login".
    emit(onEvent, { type: "warning", image: uri, message: `credential provider not loaded: ${problem.message}` });
  }
  // The chosen checker chain, else the builder's own (checkerSelection.ts).
  const { checkers } = await selectCheckers(options.checkers, projectDir, config, selected.builder, selected.name);
  const skip = options.force ? "force" : image.tag === "latest" ? "latest" : checkers.length === 0 ? "no-checkers" : undefined;
  const check = async () => {
    if (skip) {
      emit(onEvent, { type: "check.skipped", image: uri, reason: skip });
      return null;
    }
    return runCheckers(checkers, repositoryOf(image), image.tag, platforms, { image: uri, onEvent, signal, strict });
  };
  // A dry run takes no lease, so it needs no lock provider (nor its settings).
  const coordination = new BuildCoordination({
    image: uri,
    repository: repositoryOf(image),
    tag: image.tag,
    platforms,
    strict,
    signal,
    onEvent,
    lock: dryRun ? { name: FILE_LOCK_PROVIDER, provider: undefined, source: "default" } : await selectLockProvider(options.lockProvider, projectDir, config),
    cache: await selectCheckCache(options.checkCache, projectDir, config),
  });

  /** A found image reports its digest too (what its build reported), so every caller sees the same answer. */
  const found = async (outcome: CoordinatedCheck & { uri: string }): Promise<EngineImageBuild> => {
    const digest = outcome.digest ?? (dryRun ? undefined : await digestOfFound(outcome.uri, signal));
    return done({ uri: outcome.uri, ...(digest ? { digest } : {}), outcome: "found", foundBy: outcome.foundBy, builder: selected.name }, false);
  };

  const first = await coordination.check(check, { enabled: !skip, afterLock: false });
  if (first?.uri) return found({ ...first, uri: first.uri });
  signal.throwIfAborted();

  // Not for a forced build nor an explicit tag (PromotionStep.enabled): only a content tag says the copy is the same image.
  const promotion = skip ? undefined : new PromotionStep({ image, sources: selectPromoteFrom(options.promoteFrom, config).sources, strict, signal, onEvent });
  if (dryRun && promotion?.enabled) {
    const candidate = await promotion.findCandidate();
    if (candidate) return done({ uri, outcome: "would-promote", promotedFrom: candidate.source, builder: selected.name }, false);
  }

  if (dryRun) {
    history.reason();
    emit(onEvent, { type: "build.start", image: uri, builder: selected.name, platforms, dryRun: true });
    return done({ uri, outcome: "would-build", builder: selected.name }, false);
  }

  const lock = await coordination.acquire(`${uri}|${[...platforms].sort().join(",")}`, (key) => takeLock(key, uri, signal, onEvent));
  try {
    if (!skip) {
      // Always, not only after waiting: another process may have pushed and released the lock while
      // our first check was under way (its "absent" is stale by now) — building would push twice.
      const again = await coordination.check(check, { enabled: true, afterLock: true });
      if (again?.uri) return await found({ ...again, uri: again.uri });
    }
    signal.throwIfAborted();
    // Under the same lock as a build: two processes never both promote (or one promote, one build).
    const promoted = promotion?.enabled ? await promotion.run(lock.beforePush) : undefined;
    if (promoted) {
      await coordination.remember(promoted.uri, promoted.digest);
      return await history.attached(
        done({ uri: promoted.uri, digest: promoted.digest, outcome: "promoted", promotedFrom: promoted.source, builder: selected.name }, false),
        signal,
      );
    }
    signal.throwIfAborted();
    // Only now are secret values needed (a found image needs none): a missing one fails before building.
    const secrets = resolveBuildSecrets(image, options.secrets);
    const redact = secretRedactor(secrets.values());
    // Exact secret values first: the generic credential patterns would otherwise alter a line before it is matched.
    const redacting = redactingListener(onEvent);
    const builderEvents: EventListener = secrets.size === 0 ? redacting : (event) => redacting(redactEventSecrets(event, redact));
    history.reason();
    emit(onEvent, { type: "build.start", image: uri, builder: selected.name, platforms, dryRun: false });
    let result: ImageBuild;
    try {
      result = await selected.builder.buildImage(image, {
        dryRun: false,
        wait: true,
        force: options.force ?? false,
        signal,
        onEvent: builderEvents,
        ...(secrets.size > 0 ? { secrets: Object.fromEntries(secrets) } : {}),
        fencingToken: lock.fencingToken,
        beforePush: lock.beforePush,
      });
    } catch (error) {
      // A RUN step that printed a secret may be quoted in the builder's error (a log tail): scrub first.
      if (secrets.size > 0) redactErrorSecrets(error, redact);
      if (signal.aborted) throw new CancelledError(`Build of ${uri} cancelled`, { cause: error });
      if (KilnError.isInstance(error)) throw error;
      throw new BuildFailedError(`Builder ${selected.name} failed to build ${uri}: ${redactSecrets(redact((error as Error)?.message ?? String(error)))}`, {
        hint: "See the build log above; fix the failing step and build again.",
        cause: error,
        details: { image: uri, builder: selected.name },
      });
    }
    signal.throwIfAborted();
    // Before the lease goes: the hosts waiting for it find the digest in the cache.
    await coordination.remember(result.uri, result.digest);
    // The tag's inputs next to the pushed image too, where its registry takes them (explainArtifact.ts).
    return await history.attached(done({ ...result, uri: result.uri, outcome: "built", builder: selected.name }, true), signal);
  } finally {
    await lock.release();
  }
}

/** File-system failures taking the lock: the disk (or quota) is full, or the directory is read-only. */
const LOCK_FS_ERRORS = new Set(["ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "ENOTDIR"]);

/** The per-image lock, with a full or read-only lock directory turned into a typed error (and no empty lock file left). */
async function takeLock(key: string, uri: string, signal: AbortSignal, onEvent: EventListener) {
  try {
    return await acquireImageLock(key, { signal, onWait: (lockPath) => emit(onEvent, { type: "lock.wait", image: uri, lockPath }) });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException)?.code;
    if (KilnError.isInstance(error) || !code || !LOCK_FS_ERRORS.has(code)) throw error;
    const dir = lockDirectory();
    throw new BuildFailedError(
      `Cannot take the build lock for ${uri} in ${dir}: ${code === "ENOSPC" || code === "EDQUOT" ? "no space left on the device" : "the directory is not writable"} (${code})`,
      {
        hint: `Free some space in ${dir} (or make it writable), or point KILN_LOCK_DIR at a directory with room, and build again.`,
        cause: error,
        details: { image: uri, lockDir: dir, errno: code },
      },
    );
  }
}

/** Starting over after a lost lease more often than this means something is wrong: report it. */
const LEASE_ATTEMPTS = 3;

/**
 * A build whose lease ended before its push (this host was cut off or too slow; another host took
 * the build over) pushed nothing: it starts over, and its check finds what the new holder pushed.
 */
async function runBuildKeepingLease(image: Image, options: EngineBuildOptions, signal: AbortSignal, onEvent: EventListener): Promise<EngineImageBuild> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await runBuild(image, options, signal, onEvent);
    } catch (error) {
      if (!LeaseLostError.isInstance(error) || attempt >= LEASE_ATTEMPTS || signal.aborted) throw error;
      emit(onEvent, { type: "warning", image: image.uri, message: `${error.message}; starting over (attempt ${attempt + 1} of ${LEASE_ATTEMPTS})` });
    }
  }
}

/** Runs the build inside the shared work, so its error event reaches every caller once. */
async function runShared(
  image: Image,
  options: EngineBuildOptions,
  signal: AbortSignal,
  fanOut: EventListener,
  buildBase: BaseBuilder,
): Promise<EngineImageBuild> {
  try {
    // An image built on a Kiln image: that one first (graphBuild.ts).
    const resolved = await resolveKilnBase(image, signal, fanOut, buildBase);
    if ("result" in resolved) return resolved.result;
    return await runBuildKeepingLease(resolved.image, options, signal, fanOut);
  } catch (error) {
    const final = signal.aborted && !CancelledError.isInstance(error) ? new CancelledError(`Build of ${image.uri} cancelled`, { cause: error }) : error;
    emit(fanOut, { type: "error", image: image.uri, error: serializeError(final) });
    throw final;
  }
}

/**
 * The image this call builds: the default registry applied (down its chain: graph.ts, as `kiln
 * dockerfile` shows it), and the sources pinned (snapshot.ts): the
 * content tag is computed once, from one snapshot of the files that the builder then sends, so the
 * check, the lock, the build and the push all use the same tag, and a file changed meanwhile fails the
 * build (SourceChangedError) instead of being pushed under a tag computed from other bytes.
 */
function buildTarget(image: Image, projectDir: string): Image {
  const target = withDefaultRegistry(image, selectRegistry(loadConfig(projectDir)));
  return target.needsBuild ? pinSources(target) : target;
}

export function build(image: Image, options: EngineBuildOptions & { wait: false }): Promise<EngineBuildHandle>;
export function build(image: Image, options?: EngineBuildOptions): Promise<EngineImageBuild>;
/**
 * Builds `image` with the configured builder unless a checker finds it (see the module comment).
 * Concurrent calls for the same image (uri + platforms) without a signal return the same promise.
 */
export function build(image: Image, options: EngineBuildOptions = {}): Promise<EngineImageBuild | EngineBuildHandle> {
  return buildGraphNode(image, options);
}

/**
 * `build()`, with how the Kiln base of an image is built (graphBuild.ts): by default another `build()`
 * with the same options, its events going to this build's listeners; `buildAll` passes its own.
 */
export function buildGraphNode(image: Image, options: EngineBuildOptions & { wait: false }, buildBase?: BaseBuilder): Promise<EngineBuildHandle>;
export function buildGraphNode(image: Image, options?: EngineBuildOptions, buildBase?: BaseBuilder): Promise<EngineImageBuild>;
export function buildGraphNode(image: Image, options: EngineBuildOptions = {}, buildBase?: BaseBuilder): Promise<EngineImageBuild | EngineBuildHandle> {
  try {
    rejectUnknownKeys("build options", optionsObject("build options", options), BUILD_OPTION_KEYS);
    checkBasePlatforms(image.spec);
    const projectDir = resolveProjectDir(options.projectDir);
    // pinBase: the base's digest is part of the tag, so it is resolved before anything uses the tag.
    if (needsBasePin(image, selectPinBase(options.pinBase, loadConfig(projectDir)))) {
      // Only this call's pin is reported: a base pinned already (withBaseDigest) while only the uv image needed it is not news.
      const baseWasPinned = image.spec.base.kind === "image" && image.spec.base.digest !== undefined;
      return pinBaseImage(image, { pinBase: options.pinBase, projectDir, signal: options.signal, onEvent: options.onEvent }).then((pinned) => {
        if (!baseWasPinned && pinned.spec.base.kind === "image" && pinned.spec.base.digest)
          emit(options.onEvent, { type: "base.pinned", image: pinned.uri, base: pinned.spec.base.ref, digest: pinned.spec.base.digest });
        return buildGraphNode(pinned, options, buildBase);
      });
    }
    const target = buildTarget(image, projectDir);
    const { wait: _wait, ...baseOptions } = options;
    const viaBuild: BaseBuilder = (base, signal, onEvent) => build(base, { ...baseOptions, signal, onEvent });
    // Callers without a signal get the very same promise as the build already in flight.
    const running = shared.run(
      buildKey(target, { ...options, projectDir }),
      (signal, fanOut) => runShared(target, { ...options, projectDir }, signal, fanOut, buildBase ?? viaBuild),
      {
        signal: options.signal,
        onEvent: options.onEvent,
      },
    );
    if (options.wait !== false) return running;
    running.catch(() => {}); // surfaced by wait(); never an unhandled rejection
    return Promise.resolve({ uri: target.uri, wait: () => running });
  } catch (error) {
    return Promise.reject(error);
  }
}

/** The reference guide's `ImageBuildEngine.build(image, builder=…)`. */
export const ImageBuildEngine = {
  build,
  init,
} as const;

/** Sets process-wide defaults: `init({ imageBuilder: "docker", imageRegistry: "ghcr.io/acme" })`. */
export function init(options: InitOptions = {}): void {
  initSelection(options);
}
