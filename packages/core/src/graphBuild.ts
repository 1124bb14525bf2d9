/**
 * Building an image graph (graph.ts): before an image built on a Kiln image is built, its base is
 * built — through the engine's own `build()`, so with the same checks, locks, dedupe and options —
 * and `FROM` is pointed at the URI the base was built (or found, or promoted) at.
 */
import type { EngineImageBuild } from "./engine.js";
import { BaseMismatchError } from "./errors.js";
import type { EventListener } from "./events.js";
import type { Image } from "./image.js";
import { referenceHasDigest } from "./pinnedReference.js";
import { isOciLayoutTarget } from "./reference.js";
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
  const uri = result.uri ?? base.uri;
  // This image's tag was hashed from `base.tag`: never built on (or answered with) a base of another tag.
  if (base.needsBuild && tagOf(uri) !== base.tag) {
    throw new BaseMismatchError(`${image.uri} was not built: its base came back as ${uri}, not under the tag ${base.tag} its own tag was computed from`, {
      hint: "The base's inputs changed while the run went on (e.g. with pinBase, its upstream tag moved between two lookups); build again.",
      details: { image: image.uri, base: base.uri, built: uri },
    });
  }
  if (!image.needsBuild) return { result };
  // Only `FROM` changes: the tag (the base's content tag is hashed, not its URI) and the pinned sources stay.
  // By digest when known: the very image built (or found), even if its tag is pushed again meanwhile.
  const from = result.digest !== undefined && !referenceHasDigest(uri) && !isOciLayoutTarget(uri) ? `${uri}@${result.digest}` : uri;
  return { image: carrySnapshot(image, image.withResolvedBase(base, from)) };
}

/** The tag of `name:tag` / `host:port/name:tag[@digest]` (undefined when it names none). */
function tagOf(reference: string): string | undefined {
  const name = reference.split("@")[0]!;
  const colon = name.lastIndexOf(":");
  return colon > name.lastIndexOf("/") ? name.slice(colon + 1) : undefined;
}
