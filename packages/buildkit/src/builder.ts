/**
 * BuildKitImageBuilder (builder name `buildkit`): builds Kiln images with BuildKit's Control API.
 *
 * - `docker-engine` (the default): the engine's embedded BuildKit over the Engine API's `/grpc`; the
 *   `moby` exporter leaves the image in the engine, which pushes it (@kiln/docker's push, with the same
 *   X-Registry-Auth credentials). Several platforms: one Solve each under a per-platform tag, pushed
 *   and joined by an OCI index, as @kiln/docker does.
 * - a standalone buildkitd (`unix://`, `tcp://` with mTLS): the `image` exporter pushes straight to
 *   the registry (`push=true`), every platform in one Solve, one index; the daemon gets registry
 *   credentials through the session.
 * - several endpoints: a pool; see pool.ts for how images are placed.
 * Pushed digests are checked against the registry before they are returned.
 */
import {
  CancelledError,
  ConfigError,
  emit,
  KilnError,
  PushFailedError,
  redactSecrets,
  RegistryClient,
  resolveBuildSecrets,
  resolveRegistryCredentials,
  scrubSecrets,
  secretRedactor,
  type Architecture,
  type BuildImageOptions,
  type CredentialSource,
  type Image,
  type ImageBuild,
  type ImageBuilder,
  type ImageCheckerLike,
} from "@kiln/core";
import { assembleIndex, DockerDaemon, LocalDockerImageChecker, platformTag, RegistryImageChecker } from "@kiln/docker";
import { encodeRegistryAuth, provenanceLabels, pushedManifest, pushIdleTimeoutMs, pushTag, registryHost, type PlatformManifest, type RegistryAuth } from "@kiln/docker/internal";
import { checkBasePlatforms } from "./basePlatforms.js";
import { resolveCache, type CacheOptions } from "./cache.js";
import type { BuildKitClient } from "./client.js";
import { resolveEndpoints, type BuildKitEndpoint, type BuildKitEndpointOptions } from "./endpoints.js";
import { EndpointPool } from "./pool.js";
import { configuredBuildKitOptions, type ConfiguredBuildKitOptions } from "./projectConfig.js";
import { solveImage, type SolveImageOptions } from "./solveImage.js";

export interface BuildKitImageBuilderOptions extends CacheOptions {
  /**
   * Where BuildKit runs: `docker-engine`, `unix:///…/buildkitd.sock`, `tcp://host:port` (with `tls`),
   * or several (a pool). Default: KILN_BUILDKIT_HOST (comma-separated), else `docker-engine`.
   */
  endpoints?: Array<string | BuildKitEndpointOptions>;
  /** Environment read for KILN_BUILDKIT_*, DOCKER_HOST/DOCKER_CONFIG and credential lookups (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Credentials by registry host, consulted before credential providers and the Docker config. */
  credentials?: CredentialSource;
  /** The client used to verify pushes, put multi-platform indexes and check base images. */
  registryClient?: RegistryClient;
  /** Do not use the build cache. */
  noCache?: boolean;
  /** Always resolve the base image from its registry (`image-resolve-mode=pull`). */
  pull?: boolean;
  /** `host` runs steps in the daemon host's network (needs the daemon's network.host entitlement). Default: KILN_BUILDKIT_NETWORK. */
  networkMode?: string;
  /** Check that the base image has every requested platform before solving (default true). */
  checkBasePlatforms?: boolean;
  /** How long connecting to one endpoint may take (default 10 s). */
  connectTimeoutMs?: number;
  /**
   * Where `builderOptions.buildkit` is read from (kiln.config.json, or package.json's `kiln` field):
   * default the nearest directory with a package.json at or above the working directory; `false`
   * reads none. Those settings come last: these options, then KILN_BUILDKIT_*, then the file's.
   */
  projectDir?: string | false;
}

/** What the options, the environment and the project's settings resolve to (on first use, so a bad setting is a ConfigError of the build). */
interface Setup {
  endpoints: BuildKitEndpoint[];
  pool: EndpointPool;
  configured: ConfiguredBuildKitOptions;
}

export class BuildKitImageBuilder implements ImageBuilder {
  readonly name = "buildkit";
  private readonly env: NodeJS.ProcessEnv;
  private registryClientInstance: RegistryClient | undefined;
  private setupInstance: Setup | undefined;

  constructor(private readonly options: BuildKitImageBuilderOptions = {}) {
    this.env = options.env ?? process.env;
    this.registryClientInstance = options.registryClient;
  }

  private get setup(): Setup {
    if (!this.setupInstance) {
      const configured = this.options.projectDir === false ? {} : configuredBuildKitOptions(this.options.projectDir);
      const endpoints = resolveEndpoints(this.options.endpoints, this.env, configured);
      const pool = new EndpointPool(endpoints, { env: this.env, timeoutMs: this.options.connectTimeoutMs ?? configured.connectTimeoutMs });
      this.setupInstance = { endpoints, pool, configured };
    }
    return this.setupInstance;
  }

  /** The endpoints in force: the `endpoints` option, else KILN_BUILDKIT_HOST, else the project's builderOptions.buildkit, else the engine. */
  get endpoints(): readonly BuildKitEndpoint[] {
    return this.setup.endpoints;
  }

  private get registryClient(): RegistryClient {
    this.registryClientInstance ??= new RegistryClient({ env: this.env, ...(this.options.credentials ? { credentials: this.options.credentials } : {}) });
    return this.registryClientInstance;
  }

  /** The registry; with the engine in the pool, its local images first (registry-less images). */
  getCheckers(): ImageCheckerLike[] {
    const registry = new RegistryImageChecker({ client: this.registryClient });
    return this.endpoints.some((e) => e.kind === "docker-engine") ? [new LocalDockerImageChecker({ env: this.env }), registry] : [registry];
  }

  /** Closes the connections the pool holds (they are also closed when the process exits). */
  close(): void {
    this.setupInstance?.pool.close();
  }

  buildImage(image: Image, options: BuildImageOptions = {}): Promise<ImageBuild> {
    if (options.wait === false) {
      const running = this.run(image, options);
      running.catch(() => undefined);
      return Promise.resolve({ uri: image.uri, wait: () => running });
    }
    return this.run(image, options);
  }

  private async run(image: Image, options: BuildImageOptions): Promise<ImageBuild> {
    const uri = image.uri;
    if (options.dryRun || !image.needsBuild) return { uri };
    const { signal, onEvent } = options;
    if (signal?.aborted) throw new CancelledError(`Build of ${uri} cancelled`);
    const secrets = resolveBuildSecrets(image, options.secrets, this.env);
    const platforms = [...image.platform];
    const repository = image.registry ? `${image.registry}/${image.name}` : image.name;

    const scrub: string[] = [];
    const redactValues = secretRedactor(secrets.values());
    const redact = (text: string) => redactSecrets(scrubSecrets(redactValues(text), scrub));
    try {
      const { pool, configured } = this.setup;
      return await pool.use(image, platforms, { signal, onEvent }, async (client) => {
        const engine = client.endpoint.kind === "docker-engine";
        if ((this.options.checkBasePlatforms ?? configured.checkBasePlatforms) !== false) await checkBasePlatforms(image, platforms, { client: this.registryClient, env: this.env, engine, signal, onEvent });
        const cache = resolveCache(image, this.options, client.endpoint, this.env, configured);
        if (cache.skipped) emit(onEvent, { type: "warning", image: uri, message: cache.skipped });
        const common = {
          image,
          uri,
          platforms,
          repository,
          labels: await provenanceLabels(image),
          secrets,
          credentials: this.options.credentials,
          env: this.env,
          noCache: this.options.noCache ?? configured.noCache,
          pull: this.options.pull ?? configured.pull,
          networkMode: this.options.networkMode ?? (this.env.KILN_BUILDKIT_NETWORK || undefined) ?? configured.networkMode,
          cacheImports: cache.cacheImports,
          cacheExports: cache.cacheExports,
          signal,
          onEvent,
          redact,
          onSecret: (s: string) => scrub.push(s),
        };
        return engine ? await this.buildOnEngine(client, image, { ...common, scrub }) : await this.buildStandalone(client, image, common);
      });
    } catch (error) {
      if (signal?.aborted && !CancelledError.isInstance(error)) throw new CancelledError(`Build of ${uri} cancelled`, { cause: error });
      throw error;
    }
  }

  /** A standalone buildkitd: every platform in one Solve; the `image` exporter pushes one manifest or index. */
  private async buildStandalone(client: BuildKitClient, image: Image, options: Omit<SolveImageOptions, "exporter"> & { repository: string }): Promise<ImageBuild> {
    const { uri, onEvent, signal } = options;
    if (!image.registry) {
      throw new ConfigError(`${uri} has no registry: a standalone BuildKit (${client.endpoint.address}) can only push what it builds`, {
        hint: "Give the image a registry (`image.clone({ registry })`, KILN_IMAGE_REGISTRY or init({ imageRegistry })), or build with the `docker-engine` endpoint to keep it in the local engine.",
        details: { endpoint: client.endpoint.address },
      });
    }
    const solved = await solveImage(client, { ...options, exporter: { type: "image", attrs: { name: `${options.repository}:${image.tag}`, push: "true" } } });
    const digest = solved.exporterResponse["containerimage.digest"];
    if (!digest) throw new PushFailedError(`BuildKit at ${client.endpoint.address} pushed ${uri} without reporting a digest`, { details: { endpoint: client.endpoint.address } });
    await this.verifyPushed(uri, digest, signal);
    emit(onEvent, { type: "push.done", image: uri, digest, ...(options.platforms.length === 1 ? { platform: options.platforms[0]! } : {}) });
    return { uri, digest };
  }

  /** The engine's BuildKit: one Solve per platform into the engine (`moby` exporter), pushed by the engine. */
  private async buildOnEngine(
    client: BuildKitClient,
    image: Image,
    options: Omit<SolveImageOptions, "exporter"> & { repository: string; scrub: string[] },
  ): Promise<ImageBuild> {
    const { uri, onEvent, signal, platforms, repository, redact } = options;
    const tag = image.tag;
    const daemon = DockerDaemon.fromEnv(this.env);
    let auth: RegistryAuth | undefined;
    if (image.registry) {
      const host = registryHost(image.registry);
      auth = encodeRegistryAuth(host, await resolveRegistryCredentials(host, { credentials: this.options.credentials, env: this.env }));
      options.scrub.push(...auth.secrets);
    }
    const idleTimeoutMs = pushIdleTimeoutMs(undefined, this.env);
    const push = async (pushTagName: string, platform?: Architecture) => {
      const pushed = await pushTag(daemon, { repository, tag: pushTagName, registry: auth!.registry, registryAuth: auth!.header, image: uri, onEvent, signal, redact, idleTimeoutMs });
      emit(onEvent, { type: "push.done", image: uri, digest: pushed.digest, ...(platform ? { platform } : {}) });
      return pushed;
    };
    const solveInto = (ref: string, platform: Architecture) =>
      solveImage(client, { ...options, platforms: [platform], exporter: { type: "moby", attrs: { name: ref } } });

    try {
      if (platforms.length === 1) {
        await solveInto(`${repository}:${tag}`, platforms[0]!);
        if (!auth) return { uri };
        const pushed = await push(tag, platforms[0]);
        await this.verifyPushed(uri, pushed.digest, signal);
        return { uri, digest: pushed.digest };
      }
      const manifests: Array<[Architecture, PlatformManifest]> = [];
      for (const platform of platforms) {
        const archTag = platformTag(tag, platform);
        await solveInto(`${repository}:${archTag}`, platform);
        if (auth) {
          const pushed = await push(archTag, platform);
          manifests.push([platform, await pushedManifest(this.registryClient, { repository, registry: auth.registry, ...pushed }, signal)]);
        }
      }
      if (!auth) {
        // Kept in the engine: each platform under its own tag, the image's tag on the first.
        const docker = await daemon.docker();
        await docker.getImage(`${repository}:${platformTag(tag, platforms[0]!)}`).tag({ repo: repository, tag });
        return { uri };
      }
      signal?.throwIfAborted();
      const index = assembleIndex(manifests);
      const digest = await this.registryClient.putManifest(`${repository}:${tag}`, index.body, index.mediaType);
      emit(onEvent, { type: "push.done", image: uri, digest });
      return { uri, digest };
    } catch (error) {
      if (KilnError.isInstance(error)) throw error;
      throw daemon.translate(error, signal);
    }
  }

  /** The registry must serve the digest the daemon reported under the image's tag. */
  private async verifyPushed(uri: string, digest: string, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    const head = await this.registryClient.headManifest(uri);
    if (head?.digest !== digest) {
      throw new PushFailedError(`The registry serves ${head?.digest ?? "nothing"} for ${uri}, not the pushed ${digest}`, {
        hint: "Another push may have raced this one to the same tag, or the registry did not store the push; run the build again.",
        details: { uri, digest, served: head?.digest },
      });
    }
  }
}

