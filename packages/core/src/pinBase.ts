/**
 * pinBase: base images pinned by digest. Off by default; when on, the base reference of an image
 * built on an existing image is resolved to the digest its registry serves now (baseDigest.ts) before
 * the content tag is computed, so the digest is part of the tag (a base tag that moved upstream
 * rebuilds everything on it) and of `FROM ref@digest` (every builder reads exactly that base).
 *
 * Which setting applies: the image's own choice (`fromBase(ref, { pinBase })`, `fromDebianBase`,
 * `fromNodeBase`, `clone({ pinBase })`) > build({ pinBase }) > init({ pinBase }) > KILN_PIN_BASE
 * (1/true/0/false) > "pinBase" in kiln.config.json (or package.json "kiln") > off.
 *
 * Not pinned: a base whose reference already names a digest (it is pinned as written) and a
 * `fromDockerfile` image (its own FROM lines are the user's). A Kiln image used as the base
 * (`fromBase(otherImage)`, graph.ts) is pinned down its chain: the bottom image's base gets the digest,
 * and each image above gets the pinned tag of the one below (so a moved base rebuilds the chain).
 *
 * The uv image (`COPY --from=<uvImage>`, for images that install with uv) is read at build time too,
 * so the same setting pins it the same way (each image of a chain that copies uv): one HEAD per
 * reference for the run, its digest in the tag (`uvDigest`) and in `COPY --from=uvImage@digest`.
 */
import { resolveBaseDigest, resolveUvImageDigest, type ResolveBaseDigestOptions } from "./baseDigest.js";
import { usesUvImage } from "./dockerfile.js";
import { loadConfig, type LoadedConfig } from "./config.js";
import { ConfigError, describeValue } from "./errors.js";
import type { Image } from "./image.js";
import { parseReference } from "./reference.js";
import { getInitOptions, resolveProjectDir } from "./selection.js";

export const PIN_BASE_ENV = "KILN_PIN_BASE";

/** The global setting: option > init > KILN_PIN_BASE > config > off. */
export function selectPinBase(option: boolean | undefined, config: LoadedConfig): boolean {
  if (option !== undefined && typeof option !== "boolean") {
    throw new ConfigError(`Invalid build({ pinBase }) ${describeValue(option)}: expected true or false`, {
      hint: "Pass pinBase: true to pin base images by digest.",
    });
  }
  if (option !== undefined) return option;
  const fromInit = getInitOptions().pinBase;
  if (fromInit !== undefined) return fromInit;
  const env = process.env[PIN_BASE_ENV];
  if (env !== undefined && env !== "") {
    const value = env.toLowerCase();
    if (value === "1" || value === "true") return true;
    if (value === "0" || value === "false") return false;
    throw new ConfigError(`Invalid ${PIN_BASE_ENV} ${describeValue(env)}: expected 1, true, 0 or false`, {
      hint: `Set ${PIN_BASE_ENV}=1 to pin base images by digest, or unset it.`,
      details: { env: PIN_BASE_ENV },
    });
  }
  return config.pinBase ?? false;
}

/**
 * True when something `image` (or its chain) is built from is to be resolved now: pinning applies and
 * it has no digest yet — its base, or the uv image it copies uv from.
 */
export function needsBasePin(image: Image, globalPin: boolean): boolean {
  return needsOwnBasePin(image, globalPin) || needsUvPin(image, globalPin);
}

/** The image's own pinBase choice, else the global setting (a fromDockerfile image has no choice of its own). */
function pinApplies(image: Image, globalPin: boolean): boolean {
  const base = image.spec.base;
  return base.kind === "image" ? (base.pin ?? globalPin) : globalPin;
}

function needsOwnBasePin(image: Image, globalPin: boolean): boolean {
  const base = image.spec.base;
  if (base.kind !== "image") return false;
  // A Kiln image as the base: whatever its own chain pins (its content tag is in this image's tag).
  if (base.image !== undefined) return needsBasePin(image.baseImage!, globalPin);
  if (base.digest !== undefined) return false;
  if (!pinApplies(image, globalPin)) return false;
  return parseReference(base.ref).digest === undefined;
}

/** True when the image copies uv (dockerfile.ts) from a uv image not pinned yet, and pinning applies to it. */
export function needsUvPin(image: Image, globalPin: boolean): boolean {
  if (image.spec.uvDigest !== undefined || !image.needsBuild || !usesUvImage(image)) return false;
  if (!pinApplies(image, globalPin)) return false;
  return parseReference(image.spec.uvImage).digest === undefined;
}

export interface PinBaseImageOptions extends ResolveBaseDigestOptions {
  /** The global setting for this call (beats init / env / config); the image's own choice beats it. */
  pinBase?: boolean;
  /** Project whose config applies (default: init's, else the nearest package.json). */
  projectDir?: string;
}

/**
 * `image` with its base pinned to the digest it names now, when pinning applies to it (else the
 * image as is). Its `tag`/`uri` then include the digest: what `build()` pushes and `kiln explain` shows.
 * Throws BaseDigestError when the base's registry cannot tell.
 */
export async function pinBaseImage(image: Image, options: PinBaseImageOptions = {}): Promise<Image> {
  const globalPin = selectPinBase(options.pinBase, loadConfig(resolveProjectDir(options.projectDir)));
  return pinImage(image, globalPin, options);
}

async function pinImage(image: Image, globalPin: boolean, options: ResolveBaseDigestOptions): Promise<Image> {
  if (!needsBasePin(image, globalPin)) return image;
  const lookups = {
    base: needsOwnBasePin(image, globalPin) ? pinBaseOf(image, globalPin, options) : undefined,
    uv: needsUvPin(image, globalPin) ? resolveUvImageDigest(image.spec.uvImage, options) : undefined,
  };
  // Both at once; neither left unobserved when the other fails.
  const [base, uvDigest] = await Promise.all([lookups.base, lookups.uv]);
  const rebased = base === undefined ? image : base;
  return uvDigest === undefined ? rebased : rebased.withUvDigest(uvDigest);
}

/** `image` with its base pinned: a Kiln base pinned down its chain, else the base reference's digest. */
async function pinBaseOf(image: Image, globalPin: boolean, options: ResolveBaseDigestOptions): Promise<Image> {
  const nested = image.baseImage;
  // Pinned from the bottom of the chain up: each image's tag then has its base's pinned tag in it.
  if (nested !== undefined) return image.withResolvedBase(await pinImage(nested, globalPin, options));
  const base = image.spec.base as Extract<Image["spec"]["base"], { kind: "image" }>;
  return image.withBaseDigest(await resolveBaseDigest(base.ref, options));
}
