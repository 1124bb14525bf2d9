/**
 * Checks, before solving, that the base image provides every platform the image is built for.
 * BuildKit v0.11 asked for linux/arm64 FROM an amd64-only base builds anyway and labels the amd64
 * binaries as arm64; Kiln refuses instead. The base's platforms come from the engine's own image
 * (a registry-less base, as the engine's BuildKit resolves it first) or from its registry (index
 * entries, or the config of a single-platform manifest). When neither can tell (an offline machine,
 * a registry that is down), the build goes on with a `warning` event: the check exists to catch a
 * wrong answer, not to need the network.
 *
 * A `fromDockerfile` image is not checked (its stages name their own bases).
 */
import { BuildFailedError, CancelledError, parseReference, type Architecture, type EventListener, type Image } from "@kiln/core";
import { emit, normalizePlatform, planDockerfile, type RegistryClient } from "@kiln/core/plugin";
import { DockerDaemon, hasRegistryHost } from "@kiln/docker";

export interface BasePlatformCheckOptions {
  client: RegistryClient;
  env?: NodeJS.ProcessEnv;
  /** True when the build runs on the engine's BuildKit, which resolves a local image first. */
  engine: boolean;
  signal?: AbortSignal;
  onEvent?: EventListener;
}

/** The base reference of a Kiln-rendered image, or undefined (fromDockerfile). */
export function baseReferenceOf(image: Image): string | undefined {
  if (image.spec.base.kind === "dockerfile") return undefined;
  return planDockerfile(image).baseRef;
}

export async function checkBasePlatforms(image: Image, platforms: readonly Architecture[], options: BasePlatformCheckOptions): Promise<void> {
  const base = baseReferenceOf(image);
  if (!base) return;
  let provided: string[] | undefined;
  let source = "";
  try {
    if (options.engine && !hasRegistryHost(base)) {
      provided = await enginePlatforms(base, options.env);
      source = "the Docker Engine's image";
    }
    if (!provided) {
      const found = await options.client.platforms(base, { signal: options.signal });
      if (found) {
        provided = found.platforms;
        source = `the registry ${parseReference(base).registry}`;
      }
    }
  } catch (error) {
    if (options.signal?.aborted || CancelledError.isInstance(error)) throw error;
    emit(options.onEvent, {
      type: "warning",
      image: image.uri,
      message: `Could not read the platforms of the base image ${base}: ${(error as Error).message}; building without that check`,
    });
    return;
  }
  if (!provided) {
    emit(options.onEvent, {
      type: "warning",
      image: image.uri,
      message: `The base image ${base} was not found locally or in its registry; BuildKit will resolve it`,
    });
    return;
  }
  const have = new Set(provided.map((p) => normalizePlatform(p)));
  const missing = platforms.filter((p) => !have.has(normalizePlatform(p)));
  if (missing.length === 0) return;
  throw new BuildFailedError(
    `The base image ${base} has no ${missing.join(", ")} variant (${source} provides ${[...have].join(", ") || "none"}), so ${image.uri} cannot be built for ${missing.join(", ")}`,
    {
      hint: `Use a base image published for ${missing.join(", ")} (a multi-platform index), or build ${image.uri} only for ${[...have].join(", ")} (\`image.clone({ platform: [...] })\`). BuildKit would otherwise label ${[...have][0] ?? "foreign"} binaries as ${missing[0]}.`,
      details: { base, missing, provided: [...have] },
    },
  );
}

/** `os/arch[/variant]` of a local engine image, or undefined when the engine does not have it. */
async function enginePlatforms(ref: string, env?: NodeJS.ProcessEnv): Promise<string[] | undefined> {
  const daemon = DockerDaemon.fromEnv(env ?? process.env);
  const docker = await daemon.docker();
  try {
    const info = (await docker.getImage(ref).inspect()) as { Os?: string; Architecture?: string; Variant?: string };
    return [`${info.Os ?? "linux"}/${info.Architecture ?? "amd64"}${info.Variant ? `/${info.Variant}` : ""}`];
  } catch (error) {
    if ((error as { statusCode?: number }).statusCode === 404) return undefined;
    throw daemon.translate(error);
  }
}
