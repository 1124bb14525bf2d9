/**
 * MyImageChecker: the reference guide's checker shape — a class with a static `imageExists`.
 *
 * Contract (what the engine and the conformance suite expect):
 * - resolve to the image's full URI when it is present for EVERY requested platform;
 * - resolve to null when it is absent, or present for only some of the platforms
 *   (an amd64-only image is absent for ["linux/amd64", "linux/arm64"]);
 * - throw when it cannot tell (the engine then asks the next checker, and in strict mode fails).
 */
import type { Architecture } from "@kiln/core";
import { readRecord } from "./store.js";

export class MyImageChecker {
  static async imageExists(
    repository: string,
    tag: string,
    arch: readonly Architecture[] = ["linux/amd64"],
  ): Promise<string | null> {
    // Replace with a call to your registry or build service. Handle its authentication here:
    // the engine passes no credentials to checkers.
    const record = await readRecord(repository, tag);
    if (!record) return null;
    const wanted = arch.length > 0 ? arch : (["linux/amd64"] as const);
    return wanted.every((platform) => record.platforms.includes(platform)) ? record.uri : null;
  }
}
