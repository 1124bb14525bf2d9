/**
 * The plugin interfaces (the TypeScript form of the reference guide's ImageBuilder / ImageChecker).
 */
import type { EventListener } from "./events.js";
import type { Image } from "./image.js";
import type { Architecture } from "./layers.js";

/** What the engine hands a checker besides the question itself (optional: older checkers ignore it). */
export interface ImageCheckOptions {
  /**
   * Aborted when the build is cancelled. A checker should pass it to its network calls so an
   * in-flight request (and its socket and timers) ends at once, then reject — never resolve to
   * null ("absent" would trigger a build) or to a URI. A checker that ignores it is abandoned:
   * the engine stops waiting, but its request runs on until its own timeout.
   */
  signal?: AbortSignal;
  /**
   * Reports what the check waits for — core's registry client takes it as `checkImage(ref,
   * { onEvent })` and emits `registry.retry` / `registry.ratelimit` events (a 429, a retried 503).
   * The engine shows them in the live view and `--json`, stamped with the image being checked.
   */
  onEvent?: EventListener;
}

/**
 * Answers "is repository:tag present for every one of these platforms?" with its URI, or null.
 * `options.signal` (since apiVersion 1, optional) cancels the check; see ImageCheckOptions.
 */
export interface ImageChecker {
  imageExists(repository: string, tag: string, arch?: readonly Architecture[], options?: ImageCheckOptions): Promise<string | null>;
  /**
   * Optional: whether this checker can speak for `repository`'s registry at all (e.g. a local-daemon
   * checker only for registry-less names, an ECR checker only for ECR hosts). False: the engine does
   * not ask it, and its silence never counts as "absent" nor as "could not tell" (strict mode).
   * A checker without it is taken to speak for every registry.
   */
  answersFor?(repository: string): boolean;
}

/** The guide's shape: a class whose static `imageExists` does the check (same optional `options.signal`). */
export interface ImageCheckerClass {
  imageExists(repository: string, tag: string, arch?: readonly Architecture[], options?: ImageCheckOptions): Promise<string | null>;
  /** As ImageChecker.answersFor (optional). */
  answersFor?(repository: string): boolean;
  readonly name: string;
}

export type ImageCheckerLike = ImageChecker | ImageCheckerClass;

export interface BuildImageOptions {
  dryRun?: boolean;
  /** False: start the build and return at once; `ImageBuild.remoteRun`/`wait()` follows it. */
  wait?: boolean;
  force?: boolean;
  signal?: AbortSignal;
  onEvent?: EventListener;
  /**
   * Build secret values by id, for the image's declared secrets (`withCommands(..., { secrets })`).
   * The engine passes exactly the declared ids, already resolved (caller's map, else the env var of
   * that name); a builder gets the values with `resolveBuildSecrets(image, options.secrets)` (which
   * also works when it is called directly) and must serve them to BuildKit only — never log them.
   */
  secrets?: Readonly<Record<string, string>>;
  /**
   * The fencing token of the build lease the engine holds for this image (increasing with every
   * lease handed out for it — across hosts with a shared lock provider such as @kiln/redis). A
   * builder that writes to a service able to refuse stale writers passes it along; others ignore it.
   */
  fencingToken?: number;
  /**
   * A builder that pushes calls this right before each push (each tag, each manifest or index put)
   * and does not push when it rejects — with a LeaseLostError: the lease ended (this host was cut
   * off or too slow, another host took over the build). It also renews the lease. Optional: absent
   * when the builder is called directly.
   */
  beforePush?: () => Promise<void>;
}

export interface ImageBuild {
  /** The URI built (or that would be built on a dry run); null when the builder produced none. */
  uri: string | null;
  /** The pushed manifest (or index) digest, when known. */
  digest?: string;
  /** A builder-specific handle for remote or background builds. */
  remoteRun?: unknown;
  /** For `wait: false`: resolves when the build is finished. */
  wait?: () => Promise<ImageBuild>;
}

/** A builder's answer to "can you build this image?": the reason names the layer or base it cannot do. */
export type CanBuildAnswer = { ok: true } | { ok: false; reason: string };

export interface ImageBuilder {
  buildImage(image: Image, options: BuildImageOptions): Promise<ImageBuild>;
  /**
   * Optional: whether this builder can build the image, decided from the spec alone (no network).
   * With no builder configured the engine takes the first installed builder that can; a configured
   * builder that cannot fails the build with a CannotBuildError carrying the reason. Absent: can.
   */
  canBuild?(image: Image): CanBuildAnswer;
  /** Checkers consulted, in order, before building. */
  getCheckers?(): readonly ImageCheckerLike[] | null | undefined;
}

/** The plugin contract version this core implements; a plugin's package.json `kiln.apiVersion`. */
export const KILN_API_VERSION = 1;
