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
}

/**
 * Answers "is repository:tag present for every one of these platforms?" with its URI, or null.
 * `options.signal` (since apiVersion 1, optional) cancels the check; see ImageCheckOptions.
 */
export interface ImageChecker {
  imageExists(repository: string, tag: string, arch?: readonly Architecture[], options?: ImageCheckOptions): Promise<string | null>;
}

/** The guide's shape: a class whose static `imageExists` does the check (same optional `options.signal`). */
export interface ImageCheckerClass {
  imageExists(repository: string, tag: string, arch?: readonly Architecture[], options?: ImageCheckOptions): Promise<string | null>;
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

export interface ImageBuilder {
  buildImage(image: Image, options: BuildImageOptions): Promise<ImageBuild>;
  /** Checkers consulted, in order, before building. */
  getCheckers?(): readonly ImageCheckerLike[] | null | undefined;
}

/** The plugin contract version this core implements; a plugin's package.json `kiln.apiVersion`. */
export const KILN_API_VERSION = 1;
