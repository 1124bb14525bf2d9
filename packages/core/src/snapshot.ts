/**
 * One snapshot of the sources per build: the bytes sent are the bytes hashed.
 *
 * A SourceSnapshot is the listing of every file an image copies (walk.ts) together with the sha256 of
 * each file as it was hashed for the content tag. It is taken once, when the tag is computed
 * (`snapshotSpec`); the engine binds it to the image it pins for the build (`pinSources`), and
 * everything after that works from it instead of looking at the tree again:
 *  - the build context (context.ts) sends exactly the listed entries, opening each file once
 *    (listedFile.ts: no link followed, never blocking, fstat matching the listing) and checking the
 *    sha256 of what it streamed against the pinned digest before the file's last bytes go out;
 *  - a staged (incremental) build keys and streams every stage from the same snapshot, however long
 *    the stages before it ran.
 * Any difference is a SourceChangedError naming the file, raised before the image is complete, so
 * nothing is tagged or pushed; building again takes a new snapshot.
 *
 * A snapshot is bound to an image's (frozen) spec object in a registry on `globalThis`, so builders
 * using another copy of @kiln/core find it too. Specs derived from the pinned one (a stage's copy with
 * other layers blanked, a Dockerfile stage alone) pass the snapshot explicitly; `filesFor` checks that
 * every copied layer they keep is the one listed.
 */
import { KilnError } from "./errors.js";
import { hashSpec, specOf, type HashOptions, type ImageLike } from "./hash.js";
import type { Image } from "./image.js";
import type { ImageSpec, Layer } from "./layers.js";
import type { FileDigestCache } from "./statcache.js";
import { COPYING_LAYER_KINDS, type SpecFiles, type WalkEntry } from "./walk.js";

export interface SourceSnapshot {
  /** The spec whose files were listed. */
  readonly spec: Readonly<ImageSpec>;
  /** What was listed: per layer (and the Dockerfile context), the files, directories and links. */
  readonly files: SpecFiles;
  /** The content tag computed from exactly these files. */
  readonly tag: string;
  /** sha256 (32 bytes) of every listed regular file, and of a `fromDockerfile` image's Dockerfile. */
  readonly digests: ReadonlyMap<WalkEntry, Buffer>;
  /** The digest cache the tag used: a digest found stale while streaming is dropped from it. */
  readonly cache: FileDigestCache | undefined;
}

/** Lists and hashes the image's files once: its content tag, and the snapshot that tag describes. */
export function snapshotSpec(image: ImageLike, options: HashOptions = {}): { tag: string; snapshot: SourceSnapshot } {
  const spec = specOf(image);
  const digests = new Map<WalkEntry, Buffer>();
  const { tag, files, cache } = hashSpec(spec, options, { record: digests });
  return { tag, snapshot: { spec, files, tag, digests, cache } };
}

type Bound = SourceSnapshot | (() => SourceSnapshot);
const REGISTRY_KEY = Symbol.for("kiln.sourceSnapshots");

function registry(): WeakMap<object, Bound> {
  const global = globalThis as Record<symbol, WeakMap<object, Bound> | undefined>;
  return (global[REGISTRY_KEY] ??= new WeakMap<object, Bound>());
}

/**
 * True when the image's tag is its content tag: no explicit tag, or pinned (`pinSources`) to the tag its
 * snapshot computed. An explicit tag (`main`, `v1`) is false: it can move to another image.
 */
export function hasContentTag(image: Image): boolean {
  if (image.spec.tag === undefined) return true;
  const bound = registry().get(image.spec);
  return bound !== undefined && typeof bound !== "function" && bound.tag === image.spec.tag;
}

/** True when the image's snapshot is taken (its files hashed), false when none is bound or it is bound lazily. */
export function snapshotTaken(image: ImageLike): boolean {
  const bound = registry().get(specOf(image));
  return bound !== undefined && typeof bound !== "function";
}

/** The snapshot bound to this image (by `pinSources`), taking it now if it was bound lazily. */
export function snapshotOf(image: ImageLike): SourceSnapshot | undefined {
  const spec = specOf(image);
  const bound = registry().get(spec);
  if (typeof bound !== "function") return bound;
  const snapshot = bound();
  registry().set(spec, snapshot);
  return snapshot;
}

/**
 * The image a build works on, with its sources pinned: a copy (so the snapshot belongs to this build
 * alone) whose content tag is fixed, bound to the snapshot that tag was computed from. An image with an
 * explicit tag gets its snapshot on first use (a checker that finds it needs no hashing). An image
 * that already has a snapshot is returned as is.
 */
export function pinSources(image: Image, options: HashOptions = {}): Image {
  if (registry().has(image.spec)) return image;
  if (image.spec.tag !== undefined) {
    const pinned = image.clone();
    registry().set(pinned.spec, () => snapshotSpec(pinned.spec, options).snapshot);
    return pinned;
  }
  const { tag, snapshot } = snapshotSpec(image.spec, options);
  const pinned = image.clone({ tag });
  registry().set(pinned.spec, snapshot);
  return pinned;
}

/**
 * `to` — the pinned image `from` with only its base reference resolved (graph.ts: `FROM` names the URI
 * its Kiln base was built at) — works from `from`'s snapshot: its files and tag are the same.
 */
export function carrySnapshot(from: Image, to: Image): Image {
  const bound = registry().get(from.spec);
  if (bound !== undefined && !registry().has(to.spec)) registry().set(to.spec, bound);
  return to;
}

/**
 * The snapshot's files that `spec` copies: the Dockerfile context when its base is a Dockerfile, and
 * the group of every copying layer it keeps. `spec` is the snapshot's own, or one derived from it
 * (other layers blanked, layers dropped, the base replaced by a stage image); a copying layer that is
 * not the one listed at that index is a bug, never silently sent.
 */
export function filesFor(image: ImageLike, snapshot: SourceSnapshot): SpecFiles {
  const spec = specOf(image);
  const groups = new Map(snapshot.files.groups.map((group) => [group.layerIndex, group]));
  const result: SpecFiles = { groups: [] };
  if (spec.base.kind === "dockerfile") {
    const context = groups.get(-1);
    if (context === undefined || !same(spec.base, snapshot.spec.base)) throw foreign("its Dockerfile base");
    result.groups.push(context);
    if (snapshot.files.dockerfile !== undefined) result.dockerfile = snapshot.files.dockerfile;
  }
  spec.layers.forEach((layer, index) => {
    if (!COPYING_LAYER_KINDS.has(layer.kind)) return;
    const group = groups.get(index);
    const listed = snapshot.spec.layers[index];
    if (group === undefined || listed === undefined || !same(layer, listed)) throw foreign(`layers[${index}] ${layer.kind}`);
    result.groups.push(group);
  });
  return result;
}

/** The pinned sha256 of a listed file (32 bytes). */
export function pinnedDigest(snapshot: SourceSnapshot, entry: WalkEntry): Buffer {
  const digest = snapshot.digests.get(entry);
  if (digest === undefined) throw foreign(`the file ${JSON.stringify(entry.hostPath)}`);
  return digest;
}

/** The content tag of `spec` (derived from the snapshot's, see `filesFor`) from the pinned files. */
export function snapshotTag(image: ImageLike, snapshot: SourceSnapshot): string {
  return hashSpec(specOf(image), {}, { pinned: { files: filesFor(image, snapshot), digests: snapshot.digests } }).tag;
}

function same(a: Readonly<Layer> | Readonly<ImageSpec["base"]>, b: Readonly<Layer> | Readonly<ImageSpec["base"]>): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

function foreign(what: string): KilnError {
  return new KilnError(`The source snapshot does not cover ${what}`, {
    hint: "This is a bug in Kiln or in a builder plugin: a snapshot was used with an image it was not taken for.",
  });
}
