/**
 * The plugin interfaces (the TypeScript form of the reference guide's ImageBuilder / ImageChecker).
 */
import type { EventListener } from "./events.js";
import type { Image } from "./image.js";
import type { Architecture } from "./layers.js";

/** Answers "is repository:tag present for every one of these platforms?" with its URI, or null. */
export interface ImageChecker {
  imageExists(repository: string, tag: string, arch?: readonly Architecture[]): Promise<string | null>;
}

/** The guide's shape: a class whose static `imageExists` does the check. */
export interface ImageCheckerClass {
  imageExists(repository: string, tag: string, arch?: readonly Architecture[]): Promise<string | null>;
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
