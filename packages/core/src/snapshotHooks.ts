/**
 * TESTING ONLY — not part of Kiln's API, never set in production code. Lets a test change source files
 * at exact points of a build (between the listing and the hashing, or just before a context is
 * streamed), so the races the source snapshot guards against are driven deterministically.
 *
 * Kept on `globalThis` under a `Symbol.for` key, so a test can set it from any copy of @kiln/core —
 * including a spec module loaded by the `kiln` CLI in a child process:
 *
 *   globalThis[Symbol.for("kiln.testing.snapshotHooks")] = { beforeStreaming(files) { ... } };
 */
import type { SpecFiles } from "./walk.js";

export interface SnapshotTestHooks {
  /** Called (synchronously) right after the files are listed for a content tag, before any is hashed. */
  afterListing?(files: SpecFiles): void;
  /** Awaited when a build context starts streaming, before its first file is opened. `paths`: the
   * context paths it will send. */
  beforeStreaming?(paths: readonly string[]): void | Promise<void>;
}

const KEY = Symbol.for("kiln.testing.snapshotHooks");

export function snapshotTestHooks(): SnapshotTestHooks | undefined {
  return (globalThis as Record<symbol, SnapshotTestHooks | undefined>)[KEY];
}

/** Installs (or, with undefined, removes) the hooks. */
export function setSnapshotTestHooks(hooks: SnapshotTestHooks | undefined): void {
  (globalThis as Record<symbol, SnapshotTestHooks | undefined>)[KEY] = hooks;
}
