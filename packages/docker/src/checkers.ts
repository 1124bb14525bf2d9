/**
 * The checkers the Docker builder consults, in order:
 * - LocalDockerImageChecker: the daemon's own images, for registry-less images (a local copy of a
 *   registry image proves nothing about the registry, so those are left to the next checker);
 *   arch-aware through the image's `Os`/`Architecture` (per-platform tags `<tag>-linux-arm64` count).
 *   Each platform is answered by inspecting that platform's own image, so no manifest list is
 *   trusted for a platform it merely lists (the classic image store holds none anyway). Each read
 *   takes the caller's signal, so an abort closes the request to the daemon at once.
 * - DockerRegistryImageChecker: core's `checkImage` (HEAD, then platforms from the index or config; for an
 *   index each requested platform's child manifest must still be held — a deleted child is absent).
 */
import { CancelledError, type Architecture, type ImageChecker, type ImageCheckOptions } from "@kiln/core";
import { checkImage, type RegistryClient } from "@kiln/core/plugin";
import { DockerDaemon } from "./daemon/daemon.js";
import { platformTag } from "./push/multiPlatform.js";

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
    const signal = options?.signal;
    const inspect = async (candidate: string) => {
      if (signal?.aborted) throw new CancelledError(`Check of ${ref} cancelled`, { cause: signal.reason });
      return this.inspect(candidate, signal);
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

  /**
   * `GET /images/{name}/json` (a read); undefined when the daemon has no such image. Dialled through
   * the modem (dockerode's `inspect()` takes no signal), so an abort destroys the request.
   */
  private async inspect(ref: string, signal: AbortSignal | undefined): Promise<{ Os?: string; Architecture?: string } | undefined> {
    const docker = await this.daemon.docker();
    const modem = docker.modem as unknown as { dial(options: unknown, callback: (error: unknown, data: unknown) => void): void };
    try {
      return await new Promise<{ Os?: string; Architecture?: string }>((resolve, reject) => {
        modem.dial(
          {
            path: `/images/${ref}/json`,
            method: "GET",
            options: {},
            ...(signal ? { abortSignal: signal } : {}),
            statusCodes: { 200: true, 404: "no such image", 500: "server error" },
          },
          (error, data) => (error ? reject(error) : resolve(data as { Os?: string; Architecture?: string })),
        );
      });
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode === 404) return undefined;
      throw this.daemon.translate(error, signal);
    }
  }
}

export interface DockerRegistryImageCheckerOptions {
  client?: RegistryClient;
}

/** The Docker builder's registry checker (not @kiln/dockerhub's `RegistryImageChecker`, the registered "registry" checker). */
export class DockerRegistryImageChecker implements ImageChecker {
  readonly name = "docker-registry";
  constructor(private readonly options: DockerRegistryImageCheckerOptions = {}) {}

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

/** @deprecated Renamed DockerRegistryImageChecker (@kiln/dockerhub has a `RegistryImageChecker` of its own); this alias goes in the next release. */
export const RegistryImageChecker = DockerRegistryImageChecker;
/** @deprecated Renamed DockerRegistryImageChecker; this alias goes in the next release. */
export type RegistryImageChecker = DockerRegistryImageChecker;
/** @deprecated Renamed DockerRegistryImageCheckerOptions; this alias goes in the next release. */
export type RegistryImageCheckerOptions = DockerRegistryImageCheckerOptions;
