/**
 * MyImageChecker: the reference guide's checker shape — a class with a static `imageExists`.
 *
 * Contract (what the engine and the conformance suite expect):
 * - resolve to the image's full URI when it is present for EVERY requested platform;
 * - resolve to null when it is absent, or present for only some of the platforms
 *   (an amd64-only image is absent for ["linux/amd64", "linux/arm64"]);
 * - throw when it cannot tell (the engine then asks the next checker, and in strict mode fails);
 * - honour `options.signal` (optional 4th argument): pass it to your network calls so a cancelled
 *   build closes the request at once, and reject when it fires — never answer null ("absent" would
 *   trigger a build). A checker that ignores it is abandoned by the engine, but its request keeps
 *   sockets and timers alive until its own timeout, so `kiln` cannot exit promptly.
 */
import type { Architecture, ImageCheckOptions } from "@kiln/core";
import { readRecord } from "./store.js";

export class MyImageChecker {
  static async imageExists(
    repository: string,
    tag: string,
    arch: readonly Architecture[] = ["linux/amd64"],
    options: ImageCheckOptions = {},
  ): Promise<string | null> {
    const { signal } = options;
    signal?.throwIfAborted();
    // Replace with a call to your registry or build service — e.g. `fetch(url, { signal })`. Handle
    // its authentication here: the engine passes no credentials to checkers.
    const record = await readRecord(repository, tag, { signal });
    if (!record) return null;
    const wanted = arch.length > 0 ? arch : (["linux/amd64"] as const);
    return wanted.every((platform) => record.platforms.includes(platform)) ? record.uri : null;
  }
}
