/**
 * The image `kiln build` builds for a declared one, for the commands that show it without building
 * (`kiln dockerfile`, `kiln explain`, `kiln plan`): --registry and --platform down the whole chain (as
 * `kiln build` applies them), the bases pinned when pinBase is on (pinBase.ts), then the default
 * registry (init > KILN_IMAGE_REGISTRY > config) through the engine's own `withDefaultRegistry`
 * (graph.ts) — so a base declared without a registry is named where the build puts it.
 */
import { loadConfig } from "../config.js";
import { mapChain, withDefaultRegistry } from "../graph.js";
import type { Image } from "../image.js";
import type { Architecture } from "../layers.js";
import { pinBaseImage } from "../pinBase.js";
import { resolveProjectDir, selectRegistry } from "../selection.js";

/** --registry for images declared without one, --platform for all: down each image's whole chain. */
export function withTargetFlags(image: Image, registry: string | undefined, platforms: Architecture[] | undefined): Image {
  if (!platforms) return withDefaultRegistry(image, registry);
  return mapChain(withDefaultRegistry(image, registry), (each) => (each.needsBuild ? each.clone({ platform: platforms }) : each));
}

export interface BuildTargetOptions {
  /** --registry: for images declared without one (beats the configured default). */
  registry?: string;
  /** --platform: for every image of the chain. */
  platforms?: Architecture[];
  /** Project whose config applies (default: init's, else the nearest package.json). */
  projectDir?: string;
  /** --pin-base (true), else the configured setting. */
  pinBase?: boolean;
  signal?: AbortSignal;
}

/** `declared` as `kiln build` would build it (see the module comment); with pinBase on, asks the bases' registries. */
export async function buildTargetOf(declared: Image, options: BuildTargetOptions = {}): Promise<Image> {
  const projectDir = resolveProjectDir(options.projectDir);
  const flagged = withTargetFlags(declared, options.registry, options.platforms);
  const pinned = await pinBaseImage(flagged, {
    projectDir,
    ...(options.pinBase !== undefined ? { pinBase: options.pinBase } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  return withDefaultRegistry(pinned, selectRegistry(loadConfig(projectDir)));
}
