/**
 * Image graphs: an image built on another Kiln image (`Image.fromBase(otherImage)`, or
 * `baseImage: otherImage`).
 *
 * The base is nested in the dependent's spec (`base.image`, so toJSON/fromJSON carry the whole chain
 * and a remote builder sees it), and `base.ref` is the base's tagged reference, which `FROM` names —
 * resolved again at build time to the URI the base was built (or found) at, default registry applied.
 * The base's *content tag* (never its registry or name) is an input of the dependent's tag (hash.ts),
 * so changing a base rebuilds it and every image above it, and nothing else.
 *
 * Rules checked when an image is declared, cloned or read from JSON: the base must be declared for
 * every platform of the dependent, and a chain cannot loop back on itself (only constructible by
 * handing fromJSON an object graph with a cycle). Both are ValidationErrors naming the two images.
 */
import { ValidationError } from "./errors.js";
import type { Image } from "./image.js";
import type { ImageSpec } from "./layers.js";

/** Deeper chains than this are refused when read from JSON (a real chain is a handful deep). */
export const MAX_CHAIN_DEPTH = 32;

/** `registry/name` (or `name`) of a spec, with its explicit tag when it has one: how errors name images. */
export function describeImageSpec(spec: Readonly<ImageSpec>): string {
  const repository = spec.registry ? `${spec.registry}/${spec.name}` : spec.name;
  return spec.tag ? `${repository}:${spec.tag}` : repository;
}

/** The nested base spec of an image built on a Kiln image, else undefined. */
export function baseSpecOf(spec: Readonly<ImageSpec>): Readonly<ImageSpec> | undefined {
  return spec.base.kind === "image" ? spec.base.image : undefined;
}

/**
 * Throws when a base in the chain is declared for fewer platforms than the image built on it (the
 * build would need a platform of the base that nobody builds).
 */
export function checkBasePlatforms(top: Readonly<ImageSpec>): void {
  let spec: Readonly<ImageSpec> | undefined = top;
  for (let depth = 0; spec !== undefined && depth <= MAX_CHAIN_DEPTH; depth++) {
    const base = baseSpecOf(spec);
    if (base === undefined) return;
    const missing = spec.platform.filter((p) => !base.platform.includes(p));
    if (missing.length > 0) {
      const image = describeImageSpec(spec);
      const baseName = describeImageSpec(base);
      throw new ValidationError(
        "platform",
        spec.platform.join(","),
        `${image} is declared for ${missing.join(", ")}, which its base image ${baseName} is not (it is declared for ${base.platform.join(", ")})`,
        {
          hint: `declare ${baseName} for every platform of ${image} (or drop those platforms from ${image}); with the CLI, --platform applies to the whole chain`,
          details: { image, base: baseName, missing, imagePlatforms: [...spec.platform], basePlatforms: [...base.platform] },
        },
      );
    }
    spec = base;
  }
}

/** The image and the Kiln images below it, top first. */
export function chainOf(image: Image): Image[] {
  const chain: Image[] = [image];
  for (let base = image.baseImage; base !== undefined; base = base.baseImage) chain.push(base);
  return chain;
}

/**
 * `change` applied to every image of the chain, bottom first, each dependent re-based on its changed
 * base (so `FROM` names the changed base's reference): how the CLI applies --registry and --platform
 * to a whole graph.
 */
export function mapChain(image: Image, change: (image: Image) => Image): Image {
  const changed = mapChainUnchecked(image, change);
  checkBasePlatforms(changed.spec);
  return changed;
}

function mapChainUnchecked(image: Image, change: (image: Image) => Image): Image {
  const base = image.baseImage;
  return change(base === undefined ? image : image.withResolvedBase(mapChainUnchecked(base, change)));
}

/**
 * `image` with `registry` (the default registry: --registry, else init > KILN_IMAGE_REGISTRY > config)
 * applied as `build()` applies it: to every image of its chain that is built and declared without a
 * registry (content tags do not change), each dependent's `FROM` naming its base's URI there. The one
 * place this is decided, so `kiln build`, `kiln dockerfile`, `kiln explain` and `kiln plan` agree.
 */
export function withDefaultRegistry(image: Image, registry: string | undefined): Image {
  if (!registry || chainOf(image).every((each) => each.registry || !each.needsBuild)) return image;
  return mapChainUnchecked(image, (each) => (each.registry || !each.needsBuild ? each : each.clone({ registry })));
}

/** A one-line picture of the chain for `kiln explain`: `app:… <- kiln/base:… <- python:3.11-slim`. */
export function describeChain(image: Image): string {
  const chain = chainOf(image);
  const bottom = chain[chain.length - 1]!.spec.base;
  const root = bottom.kind === "image" ? bottom.ref : `Dockerfile ${bottom.dockerfileHostPath}`;
  return [...chain.map((i) => i.uri), root].join(" <- ");
}
