/**
 * The checkers the Docker builder consults, in order:
 * - LocalDockerImageChecker: the daemon's own images, for registry-less images (a local copy of a
 *   registry image proves nothing about the registry, so those are left to the next checker);
 *   arch-aware through the image's `Os`/`Architecture` (per-platform tags `<tag>-linux-arm64` count).
 *   Each platform is answered by inspecting that platform's own image, so no manifest list is
 *   trusted for a platform it merely lists (the classic image store holds none anyway).
 * - RegistryImageChecker: core's `checkImage` (HEAD, then platforms from the index or config; for an
 *   index each requested platform's child manifest must still be held — a deleted child is absent).
 */
import { CancelledError, checkImage, type Architecture, type ImageChecker, type ImageCheckOptions, type RegistryClient } from "@kiln/core";
import { DockerDaemon } from "./daemon.js";
import { platformTag } from "./multiPlatform.js";

/** True when the first path component names a registry host (has a dot or port, or is localhost). */
export function hasRegistryHost(repository: string): boolean {
  const slash = repository.indexOf("/");
  if (slash < 0) return false;
  const first = repository.slice(0, slash);
  return first.includes(".") || first.includes(":") || first === "localhost";
}

export interface LocalDockerImageCheckerOptions {
  env?: NodeJS.ProcessEnv;
  /** Also answer for repositories that name a registry (default false: leave those to the registry). */
  anyRepository?: boolean;
}

export class LocalDockerImageChecker implements ImageChecker {
  readonly name = "docker-local";
  private readonly daemon: DockerDaemon;

  constructor(private readonly options: LocalDockerImageCheckerOptions = {}) {
    this.daemon = DockerDaemon.fromEnv(options.env ?? process.env);
  }

  /** The daemon speaks for registry-less names only (unless `anyRepository`): a local copy proves nothing about a registry. */
  answersFor(repository: string): boolean {
    return this.options.anyRepository === true || !hasRegistryHost(repository);
  }

  async imageExists(repository: string, tag: string, arch?: readonly Architecture[], options?: ImageCheckOptions): Promise<string | null> {
    if (!this.answersFor(repository)) return null;
    const ref = `${repository}:${tag}`;
    // dockerode's inspect takes no signal; each inspect is a quick local read, so check between them.
    const inspect = async (candidate: string) => {
      if (options?.signal?.aborted) throw new CancelledError(`Check of ${ref} cancelled`, { cause: options.signal.reason });
      return this.inspect(candidate);
    };
    const platforms = arch ?? [];
    if (platforms.length === 0) return (await inspect(ref)) ? ref : null;
    for (const platform of platforms) {
      let found = false;
      for (const candidate of [ref, `${repository}:${platformTag(tag, platform)}`]) {
        const inspected = await inspect(candidate);
        if (inspected && `${inspected.Os}/${inspected.Architecture}` === platform) {
          found = true;
          break;
        }
      }
      if (!found) return null;
    }
    return ref;
  }

  /** `GET /images/{name}/json` (a read); undefined when the daemon has no such image. */
  private async inspect(ref: string): Promise<{ Os?: string; Architecture?: string } | undefined> {
    const docker = await this.daemon.docker();
    try {
      return (await docker.getImage(ref).inspect()) as { Os?: string; Architecture?: string };
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode === 404) return undefined;
      throw this.daemon.translate(error);
    }
  }
}

export interface RegistryImageCheckerOptions {
  client?: RegistryClient;
}

export class RegistryImageChecker implements ImageChecker {
  readonly name = "docker-registry";
  constructor(private readonly options: RegistryImageCheckerOptions = {}) {}

  /** Registries only: a registry-less name is the daemon's (LocalDockerImageChecker). */
  answersFor(repository: string): boolean {
    return hasRegistryHost(repository);
  }

  async imageExists(repository: string, tag: string, arch?: readonly Architecture[], options?: ImageCheckOptions): Promise<string | null> {
    if (!this.answersFor(repository)) return null;
    const ref = `${repository}:${tag}`;
    const result = await checkImage(ref, {
      platforms: arch ?? [],
      ...(this.options.client ? { client: this.options.client } : {}),
      ...(options?.signal ? { signal: options.signal } : {}),
      ...(options?.onEvent ? { onEvent: options.onEvent } : {}),
    });
    return result.present ? ref : null;
  }
}
