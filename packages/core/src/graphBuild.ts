/**
 * Building an image graph (graph.ts): before an image built on a Kiln image is built, its base is
 * built — through the engine's own `build()`, so with the same checks, locks, dedupe and options —
 * and `FROM` is pointed at the URI the base was built (or found, or promoted) at.
 */
import type { EngineImageBuild } from "./engine.js";
import type { EventListener } from "./events.js";
import type { Image } from "./image.js";
import { carrySnapshot } from "./snapshot.js";

/** Builds (or finds) a base image for the image above it; `buildAll` passes one that reuses its own results. */
export type BaseBuilder = (base: Image, signal: AbortSignal, onEvent: EventListener) => Promise<EngineImageBuild>;

export type ResolvedBase =
  /** The image to build, `FROM` naming its base's URI (the image itself when it has no Kiln base). */
  | { image: Image }
  /** `fromBase(kilnImage)` without layers is its base: the base's result is the image's. */
  | { result: EngineImageBuild };

export async function resolveKilnBase(image: Image, signal: AbortSignal, onEvent: EventListener, buildBase: BaseBuilder): Promise<ResolvedBase> {
  const base = image.baseImage;
  if (base === undefined) return { image };
  const result = await buildBase(base, signal, onEvent);
  signal.throwIfAborted();
  if (!image.needsBuild) return { result };
  // Only `FROM` changes: the tag (the base's content tag is hashed, not its URI) and the pinned sources stay.
  return { image: carrySnapshot(image, image.withResolvedBase(base, result.uri ?? base.uri)) };
}
