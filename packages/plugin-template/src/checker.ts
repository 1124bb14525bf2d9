/**
 * MyImageChecker: the shape every Kiln checker has — a class with an instance `imageExists`, its
 * registered `name`, `answersFor`, and the reference guide's static `imageExists` answered by core's
 * one default instance of the class (`defaultCheckerInstance`). Kiln creates checker classes with
 * no arguments, so settings come from the environment (store.ts).
 *
 * Contract (what the engine and the conformance suite expect):
 * - resolve to the image's full URI when it is present for EVERY requested platform;
 * - resolve to null when it is absent, or present for only some of the platforms
 *   (an amd64-only image is absent for ["linux/amd64", "linux/arm64"]);
 * - throw when it cannot tell (the engine then asks the next checker, and in strict mode fails);
 * - honour `options.signal` (optional 4th argument): pass it to your network calls so a cancelled
 *   build closes the request at once, and reject when it fires — never answer null ("absent" would
 *   trigger a build). A checker that ignores it is abandoned by the engine, but its request keeps
 *   sockets and timers alive until its own timeout, so `kiln` cannot exit promptly;
 * - `answersFor(repository)`: false for repositories your service cannot speak for, so the engine
 *   does not ask it (and strict mode does not count its silence as "could not tell").
 */
import { DEFAULT_PLATFORMS, isOciLayoutTarget, type Architecture, type ImageChecker, type ImageCheckOptions } from "@kiln/core";
import { defaultCheckerInstance } from "@kiln/core/plugin";
import { readRecord } from "./store.js";

/** The name this checker is registered under in package.json (`kiln.imageCheckers`). */
export const CHECKER_NAME = "my_checker";

export class MyImageChecker implements ImageChecker {
  /** Shown in check events and the live view. */
  readonly name = CHECKER_NAME;

  /** The guide's class form: `MyImageChecker.imageExists(...)`, answered by core's one default instance. */
  static imageExists(repository: string, tag: string, arch?: readonly Architecture[], options?: ImageCheckOptions): Promise<string | null> {
    return defaultCheckerInstance(MyImageChecker).imageExists(repository, tag, arch, options);
  }

  /** The catalogue records images of any registry; an OCI layout directory (`oci:<dir>`) is not its to answer for. */
  answersFor(repository: string): boolean {
    return !isOciLayoutTarget(repository);
  }

  async imageExists(
    repository: string,
    tag: string,
    arch: readonly Architecture[] = DEFAULT_PLATFORMS,
    options: ImageCheckOptions = {},
  ): Promise<string | null> {
    const { signal } = options;
    signal?.throwIfAborted();
    // Replace with a call to your registry or build service — e.g. `fetch(url, { signal })`. Handle
    // its authentication here: the engine passes no credentials to checkers.
    const record = await readRecord(repository, tag, { signal });
    if (!record) return null;
    const wanted = arch.length > 0 ? arch : DEFAULT_PLATFORMS;
    return wanted.every((platform) => record.platforms.includes(platform)) ? record.uri : null;
  }
}
