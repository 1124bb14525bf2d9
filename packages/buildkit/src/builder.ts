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
  BuildFailedError,
  CancelledError,
  ConfigError,
  KilnError,
  PushFailedError,
  type Architecture,
  type BuildImageOptions,
  type CanBuildAnswer,
  type EventListener,
  type Image,
  type ImageBuild,
  type ImageBuilder,
  type ImageCheckerLike,
} from "@kiln/core";
import {
  DOCKER_MANIFEST,
  emit,
  normalizePlatform,
  redactSecrets,
  RegistryClient,
  resolveBuildSecrets,
  resolveRegistryCredentials,
  scrubSecrets,
  secretRedactor,
  type CredentialSource,
} from "@kiln/core/plugin";
import { localOnlyKilnBase } from "./kilnBase.js";
import { assembleIndex, DockerDaemon, LocalDockerImageChecker, platformTag, DockerRegistryImageChecker } from "@kiln/docker";
import {
  encodeRegistryAuth,
  provenanceLabels,
  pushedManifest,
  pushIdleTimeoutMs,
  pushTag,
  registryHost,
  type PlatformManifest,
  type PushResult,
  type RegistryAuth,
} from "@kiln/docker/internal";
import { checkBasePlatforms } from "./basePlatforms.js";
import { groupCache, resolveCache, type CacheOptions } from "./cache.js";
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

/**
 * How long a failed split build waits for its other groups to wind down (their Solves cancelled,
 * connections released) before it reports the failure anyway.
 */
const SIBLINGS_SETTLE_MS = 5_000;

/** One build's own pieces, shared by every Solve it makes. */
interface RunContext {
  uri: string;
  repository: string;
  secrets: ReadonlyMap<string, string>;
  /** Registry secrets handed out, scrubbed from every message. */
  scrub: string[];
  redact: (text: string) => string;
  signal?: AbortSignal;
  onEvent?: EventListener;
}

type EngineSolveOptions = Omit<SolveImageOptions, "exporter"> & { repository: string; scrub: string[] };

interface EngineSession {
  daemon: DockerDaemon;
  /** Undefined for an image without a registry (kept in the engine). */
  auth: RegistryAuth | undefined;
  push(tag: string, platform?: Architecture): Promise<PushResult>;
  solveInto(ref: string, platform: Architecture): Promise<void>;
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

  /** A Kiln base kept only in a local daemon is readable by the engine's BuildKit alone (kilnBase.ts). */
  canBuild(image: Image): CanBuildAnswer {
    const problem = localOnlyKilnBase(image);
    if (problem === undefined) return { ok: true };
    let engine = false;
    try {
      engine = this.endpoints.some((e) => e.kind === "docker-engine");
    } catch {
      return { ok: true }; // a configuration error is reported by the build itself, with its hint
    }
    return engine ? { ok: true } : { ok: false, reason: problem };
  }

  /** The registry; with the engine in the pool, its local images first (registry-less images). */
  getCheckers(): ImageCheckerLike[] {
    const registry = new DockerRegistryImageChecker({ client: this.registryClient });
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
    const run: RunContext = { uri, repository, secrets, scrub, redact, signal, onEvent };
    try {
      const { pool } = this.setup;
      // Platforms pinned to different endpoints are built there and joined by one index (buildx nodes).
      const groups = image.registry ? pool.split(platforms) : [platforms];
      if (groups.length > 1) return await this.buildSplit(image, platforms, groups, run);
      return await pool.use(image, platforms, { signal, onEvent }, async (client) => {
        const common = await this.solveOptions(client, image, platforms, run);
        return client.endpoint.kind === "docker-engine"
          ? await this.buildOnEngine(client, image, { ...common, scrub })
          : await this.buildStandalone(client, image, common);
      });
    } catch (error) {
      if (signal?.aborted && !CancelledError.isInstance(error)) throw new CancelledError(`Build of ${uri} cancelled`, { cause: error });
      throw error;
    }
  }

  /** What a Solve of `platforms` of `image` on `client` needs (base platforms checked first). */
  private async solveOptions(
    client: BuildKitClient,
    image: Image,
    platforms: Architecture[],
    run: RunContext,
  ): Promise<Omit<SolveImageOptions, "exporter"> & { repository: string }> {
    const { configured } = this.setup;
    const { uri, signal, onEvent } = run;
    const engine = client.endpoint.kind === "docker-engine";
    if ((this.options.checkBasePlatforms ?? configured.checkBasePlatforms) !== false)
      await checkBasePlatforms(image, platforms, { client: this.registryClient, env: this.env, engine, signal, onEvent });
    const cache = resolveCache(image, this.options, client.endpoint, this.env, configured);
    if (cache.skipped) emit(onEvent, { type: "warning", image: uri, message: cache.skipped });
    return {
      image,
      uri,
      platforms,
      repository: run.repository,
      labels: await provenanceLabels(image),
      secrets: run.secrets,
      credentials: this.options.credentials,
      env: this.env,
      noCache: this.options.noCache ?? configured.noCache,
      pull: this.options.pull ?? configured.pull,
      networkMode: this.options.networkMode ?? (this.env.KILN_BUILDKIT_NETWORK || undefined) ?? configured.networkMode,
      cacheImports: cache.cacheImports,
      cacheExports: cache.cacheExports,
      signal,
      onEvent,
      redact: run.redact,
      onSecret: (s: string) => run.scrub.push(s),
    };
  }

  /**
   * One image whose platforms are split across endpoints (pool.split): each group is built and pushed
   * by digest on its own endpoint, at the same time; then one index naming every child goes under
   * the image's tag. Each group exports its registry cache under its own ref (cache.ts `groupCache`),
   * so no group's export replaces another's, and imports that ref and the one given.
   *
   * The first group to fail cancels the others, and its error (naming its platforms and endpoint) is
   * the build's: reported once every other group has settled (bounded by SIBLINGS_SETTLE_MS), so that
   * when the build fails no Solve of it is still running or pushing and no connection is held for it.
   */
  private async buildSplit(image: Image, platforms: Architecture[], groups: Architecture[][], run: RunContext): Promise<ImageBuild> {
    const { uri, signal, onEvent } = run;
    const siblings = new AbortController();
    const forward = () => siblings.abort(signal?.reason);
    signal?.addEventListener("abort", forward, { once: true });
    let parts: Array<Array<[Architecture, PlatformManifest]>>;
    try {
      const groupRun = { ...run, signal: siblings.signal };
      let failed: { error: unknown } | undefined;
      const building = groups.map((group) =>
        this.setup.pool
          .use(image, group, { signal: siblings.signal, onEvent }, async (client) => {
            try {
              const solve = await this.solveOptions(client, image, group, groupRun);
              const cache = groupCache({ cacheImports: solve.cacheImports ?? [], cacheExports: solve.cacheExports ?? [] }, group);
              const options = { ...solve, cacheImports: cache.cacheImports, cacheExports: cache.cacheExports, cacheImportFallbacks: cache.importFallbacks };
              return client.endpoint.kind === "docker-engine"
                ? await this.engineManifests(client, image, { ...options, scrub: run.scrub })
                : await this.pushedByDigest(client, options);
            } catch (error) {
              throw namingEndpoint(error, group, client.endpoint.address);
            }
          })
          .catch((error: unknown) => {
            // Only the first failure is the cause; the others are the cancellation it started.
            if (!failed && !siblings.signal.aborted) failed = { error };
            siblings.abort(error);
            throw error;
          }),
      );
      const everyGroup = Promise.allSettled(building);
      const firstFailure = new Promise<void>((resolve) => siblings.signal.addEventListener("abort", () => resolve(), { once: true }));
      await Promise.race([everyGroup, firstFailure]);
      if (siblings.signal.aborted) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([everyGroup, new Promise((resolve) => (timer = setTimeout(resolve, SIBLINGS_SETTLE_MS)))]);
        clearTimeout(timer);
        signal?.throwIfAborted();
        throw failed ? failed.error : siblings.signal.reason;
      }
      parts = (await everyGroup).map((r) => (r as PromiseFulfilledResult<Array<[Architecture, PlatformManifest]>>).value);
    } finally {
      signal?.removeEventListener("abort", forward);
    }
    signal?.throwIfAborted();
    const byPlatform = new Map(parts.flat());
    const missing = platforms.filter((p) => !byPlatform.has(p));
    if (missing.length > 0) {
      throw new PushFailedError(`BuildKit pushed no manifest for ${missing.join(", ")} of ${uri}`, { details: { uri, missing } });
    }
    const index = assembleIndex(platforms.map((p) => [p, byPlatform.get(p)!] as const));
    const digest = await this.registryClient.putManifest(uri, index.body, index.mediaType, { signal });
    await this.verifyPushed(uri, digest, signal);
    emit(onEvent, { type: "push.done", image: uri, digest });
    return { uri, digest };
  }

  /** A standalone buildkitd builds `platforms` and pushes them by digest (no tag); their manifests, by platform. */
  private async pushedByDigest(
    client: BuildKitClient,
    options: Omit<SolveImageOptions, "exporter"> & { repository: string },
  ): Promise<Array<[Architecture, PlatformManifest]>> {
    const { repository, platforms, signal, onEvent, uri } = options;
    const solved = await solveImage(client, { ...options, exporter: { type: "image", attrs: { name: repository, push: "true", "push-by-digest": "true" } } });
    const digest = solved.exporterResponse["containerimage.digest"];
    if (!digest)
      throw new PushFailedError(`BuildKit at ${client.endpoint.address} pushed ${platforms.join(", ")} of ${uri} without reporting a digest`, {
        details: { endpoint: client.endpoint.address },
      });
    const fetched = await this.registryClient.getManifest(`${repository}@${digest}`, { signal });
    if (!fetched) {
      throw new PushFailedError(`The registry does not hold ${repository}@${digest}, which BuildKit at ${client.endpoint.address} reported pushed`, {
        hint: "Check the registry's storage and health, and run the build again.",
        details: { endpoint: client.endpoint.address, repository, digest },
      });
    }
    const children = fetched.manifest.manifests as
      | Array<{ digest: string; size: number; mediaType: string; platform?: { os: string; architecture: string; variant?: string } }>
      | undefined;
    const found: Array<[Architecture, PlatformManifest]> = children
      ? children
          .filter((c) => c.platform && c.platform.os !== "unknown") // attestation manifests name no platform
          .map((c) => [
            normalizePlatform(`${c.platform!.os}/${c.platform!.architecture}${c.platform!.variant ? `/${c.platform!.variant}` : ""}`) as Architecture,
            { digest: c.digest, size: c.size, mediaType: c.mediaType },
          ])
      : [[platforms[0]!, { digest, size: fetched.size ?? fetched.body.length, mediaType: fetched.mediaType ?? DOCKER_MANIFEST }]];
    for (const [platform, manifest] of found) emit(onEvent, { type: "push.done", image: uri, digest: manifest.digest, platform });
    return found;
  }

  /** A standalone buildkitd: every platform in one Solve; the `image` exporter pushes one manifest or index. */
  private async buildStandalone(
    client: BuildKitClient,
    image: Image,
    options: Omit<SolveImageOptions, "exporter"> & { repository: string },
  ): Promise<ImageBuild> {
    const { uri, onEvent, signal } = options;
    if (!image.registry) {
      throw new ConfigError(`${uri} has no registry: a standalone BuildKit (${client.endpoint.address}) can only push what it builds`, {
        hint: "Give the image a registry (`image.clone({ registry })`, KILN_IMAGE_REGISTRY or init({ imageRegistry })), or build with the `docker-engine` endpoint to keep it in the local engine.",
        details: { endpoint: client.endpoint.address },
      });
    }
    const solved = await solveImage(client, { ...options, exporter: { type: "image", attrs: { name: `${options.repository}:${image.tag}`, push: "true" } } });
    const digest = solved.exporterResponse["containerimage.digest"];
    if (!digest)
      throw new PushFailedError(`BuildKit at ${client.endpoint.address} pushed ${uri} without reporting a digest`, {
        details: { endpoint: client.endpoint.address },
      });
    await this.verifyPushed(uri, digest, signal);
    emit(onEvent, { type: "push.done", image: uri, digest, ...(options.platforms.length === 1 ? { platform: options.platforms[0]! } : {}) });
    return { uri, digest };
  }

  /** The engine's BuildKit: one Solve per platform into the engine (`moby` exporter), pushed by the engine. */
  private async buildOnEngine(client: BuildKitClient, image: Image, options: EngineSolveOptions): Promise<ImageBuild> {
    const { uri, onEvent, signal, platforms, repository } = options;
    const tag = image.tag;
    const engine = await this.engineSession(client, image, options);
    try {
      if (platforms.length === 1) {
        await engine.solveInto(`${repository}:${tag}`, platforms[0]!);
        if (!engine.auth) return { uri };
        const pushed = await engine.push(tag, platforms[0]);
        await this.verifyPushed(uri, pushed.digest, signal);
        return { uri, digest: pushed.digest };
      }
      if (!engine.auth) {
        for (const platform of platforms) await engine.solveInto(`${repository}:${platformTag(tag, platform)}`, platform);
        // Kept in the engine: each platform under its own tag, the image's tag on the first.
        const docker = await engine.daemon.docker();
        await docker.getImage(`${repository}:${platformTag(tag, platforms[0]!)}`).tag({ repo: repository, tag });
        return { uri };
      }
      const manifests = await this.engineManifestsOf(engine, image, options);
      signal?.throwIfAborted();
      const index = assembleIndex(manifests);
      const digest = await this.registryClient.putManifest(`${repository}:${tag}`, index.body, index.mediaType);
      emit(onEvent, { type: "push.done", image: uri, digest });
      return { uri, digest };
    } catch (error) {
      if (KilnError.isInstance(error)) throw error;
      throw engine.daemon.translate(error, signal);
    }
  }

  /** The engine builds `platforms` and pushes each under its per-platform tag; their manifests, by platform (for a split image's index). */
  private async engineManifests(client: BuildKitClient, image: Image, options: EngineSolveOptions): Promise<Array<[Architecture, PlatformManifest]>> {
    const engine = await this.engineSession(client, image, options);
    try {
      return await this.engineManifestsOf(engine, image, options);
    } catch (error) {
      if (KilnError.isInstance(error)) throw error;
      throw engine.daemon.translate(error, options.signal);
    }
  }

  private async engineManifestsOf(engine: EngineSession, image: Image, options: EngineSolveOptions): Promise<Array<[Architecture, PlatformManifest]>> {
    const manifests: Array<[Architecture, PlatformManifest]> = [];
    for (const platform of options.platforms) {
      const archTag = platformTag(image.tag, platform);
      await engine.solveInto(`${options.repository}:${archTag}`, platform);
      const pushed = await engine.push(archTag, platform);
      manifests.push([
        platform,
        await pushedManifest(this.registryClient, { repository: options.repository, registry: engine.auth!.registry, ...pushed }, options.signal),
      ]);
    }
    return manifests;
  }

  /** The engine's daemon, the push credentials (scrubbed from output), and Solve-into / push by tag. */
  private async engineSession(client: BuildKitClient, image: Image, options: EngineSolveOptions): Promise<EngineSession> {
    const { uri, onEvent, signal, repository, redact } = options;
    const daemon = DockerDaemon.fromEnv(this.env);
    let auth: RegistryAuth | undefined;
    if (image.registry) {
      const host = registryHost(image.registry);
      auth = encodeRegistryAuth(host, await resolveRegistryCredentials(host, { credentials: this.options.credentials, env: this.env }));
      options.scrub.push(...auth.secrets);
    }
    const idleTimeoutMs = pushIdleTimeoutMs(undefined, this.env);
    return {
      daemon,
      auth,
      push: async (pushTagName, platform) => {
        const pushed = await pushTag(daemon, {
          repository,
          tag: pushTagName,
          registry: auth!.registry,
          registryAuth: auth!.header,
          image: uri,
          onEvent,
          signal,
          redact,
          idleTimeoutMs,
        });
        emit(onEvent, { type: "push.done", image: uri, digest: pushed.digest, ...(platform ? { platform } : {}) });
        return pushed;
      },
      solveInto: (ref, platform) =>
        solveImage(client, { ...options, platforms: [platform], exporter: { type: "moby", attrs: { name: ref } } }).then(() => undefined),
    };
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

/**
 * A failed step of one group of a split build names the image and its platforms but not which of the
 * endpoints ran it; the error says so (and `details.endpoint` holds it). Other errors already name
 * their endpoint or do not depend on it.
 */
function namingEndpoint(error: unknown, group: readonly Architecture[], address: string): unknown {
  if (!BuildFailedError.isInstance(error) || error.message.includes(address)) return error;
  const where = `(${group.join(", ")}) failed`;
  const message = error.message.includes(where)
    ? error.message.replace(where, `(${group.join(", ")}) on BuildKit at ${address} failed`)
    : `${error.message}\n(on BuildKit at ${address})`;
  return new BuildFailedError(message, { hint: error.hint, details: { ...error.details, endpoint: address }, cause: error });
}
