/**
 * DockerImageBuilder: builds a Kiln image on a Docker Engine (local, or remote through DOCKER_HOST),
 * tags it, pushes it when it has a registry, and returns the pushed digest. One build per platform;
 * several platforms are pushed per platform and joined by an OCI index put through core's
 * RegistryClient.
 */
import {
  CancelledError,
  computeTag,
  isOciLayoutTarget,
  KilnError,
  type Architecture,
  type BuildImageOptions,
  type CanBuildAnswer,
  type Image,
  type ImageBuild,
  type ImageBuilder,
  type ImageCheckerLike,
} from "@kiln/core";
import {
  pinSources,
  snapshotOf,
  emit,
  redactSecrets,
  resolveBuildSecrets,
  secretRedactor,
  RegistryClient,
  resolveRegistryCredentials,
  scrubSecrets,
  type CredentialSource,
} from "@kiln/core/plugin";
import { buildOne, type BuildOneOptions } from "./build/buildOne.js";
import { DockerRegistryImageChecker, LocalDockerImageChecker } from "./checkers.js";
import { DockerDaemon, type DaemonInfo } from "./daemon/daemon.js";
import { buildIncremental, buildsInStages } from "./incremental/incremental.js";
import { assembleIndex, platformTag, presentPlatformManifests, pushedManifest, type PlatformManifest } from "./push/multiPlatform.js";
import { sweepOrphanContainers } from "./orphans/orphanContainers.js";
import { OrphanLedger, orphanDirectory } from "./orphans/orphanLedger.js";
import { provenanceLabels } from "./provenance.js";
import { pruneStages } from "./incremental/prune.js";
import { pushIdleTimeoutMs, pushTag } from "./push/push.js";
import { encodeRegistryAuth, registryHost, type RegistryAuth } from "./push/registryAuth.js";
import { stageRepository } from "./incremental/stages.js";

export interface DockerImageBuilderOptions {
  /**
   * Environment read for DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH, DOCKER_CONFIG, and KILN_LOCK_DIR
   * (where step containers stranded by a lost daemon are recorded) (default process.env).
   */
  env?: NodeJS.ProcessEnv;
  /** Force BuildKit on or off; default: on when the daemon supports it (DOCKER_BUILDKIT=0 turns it off). */
  buildkit?: boolean;
  /** The network build steps run in (`host` reaches services on the machine's loopback). Default: KILN_DOCKER_NETWORK, else the daemon's default. */
  networkMode?: string;
  /** Do not use the build cache. */
  noCache?: boolean;
  /** Always pull a newer base image. */
  pull?: boolean;
  /** Credentials by registry host, consulted before credential providers and the Docker config. */
  credentials?: CredentialSource;
  /** The client used for multi-platform indexes and the registry checker. */
  registryClient?: RegistryClient;
  /**
   * Build in stages, reusing the stages the daemon already holds (a rebuild after a source edit sends
   * only that source; a `fromDockerfile` image with layers builds its own Dockerfile alone first, then
   * Kiln's layers on it). Default true; `KILN_DOCKER_INCREMENTAL=0` turns it off.
   * False: one build with the whole context. `fromDockerfile` images without layers build in one go.
   */
  incremental?: boolean;
  /**
   * Superseded stage images are pruned only when last used (built or reused) this long before the
   * build started, so a concurrent build in another process keeps the stages it builds on. Default 10 minutes.
   */
  stagePruneGraceMs?: number;
  /** Give a push up when the daemon reports nothing for this long. Default: KILN_DOCKER_PUSH_IDLE_TIMEOUT_MS, else 120 s. */
  pushIdleTimeoutMs?: number;
}

/** What one platform's build used, for pruning superseded stages afterwards. */
interface BuiltPlatform {
  platform: Architecture;
  stageRefs: string[];
}

export class DockerImageBuilder implements ImageBuilder {
  readonly name = "docker";
  private readonly env: NodeJS.ProcessEnv;
  private registryClientInstance: RegistryClient | undefined;
  /** Step containers builds lost with their daemon (KILN_LOCK_DIR from `env` places it, like the locks). */
  private readonly orphans: OrphanLedger;
  private orphanSweep: Promise<unknown> | undefined;
  private orphanSweepAtWrites = 0;

  constructor(private readonly options: DockerImageBuilderOptions = {}) {
    this.env = options.env ?? process.env;
    this.registryClientInstance = options.registryClient;
    this.orphans = new OrphanLedger(orphanDirectory(this.env));
  }

  private get registryClient(): RegistryClient {
    this.registryClientInstance ??= new RegistryClient({ env: this.env, ...(this.options.credentials ? { credentials: this.options.credentials } : {}) });
    return this.registryClientInstance;
  }

  /**
   * Every image but one whose registry is an OCI image layout (`registry: "oci:<dir>"`): the daemon
   * pushes to registries and cannot write a layout directory, so the engine picks another builder.
   */
  canBuild(image: Image): CanBuildAnswer {
    const registry = image.spec.registry ?? "";
    if (isOciLayoutTarget(registry)) {
      return {
        ok: false,
        reason: `its registry "${registry}" is an OCI image layout directory, which the Docker builder cannot write (it pushes to registries); the oci builder writes layouts`,
      };
    }
    return { ok: true };
  }

  /** The local daemon first (registry-less images), then the registry. */
  getCheckers(): ImageCheckerLike[] {
    return [new LocalDockerImageChecker({ env: this.env }), new DockerRegistryImageChecker({ client: this.registryClient })];
  }

  buildImage(image: Image, options: BuildImageOptions = {}): Promise<ImageBuild> {
    if (options.wait === false) {
      const running = this.run(image, options);
      running.catch(() => undefined); // observed through wait()
      return Promise.resolve({ uri: image.uri, wait: () => running });
    }
    return this.run(image, options);
  }

  private async run(requested: Image, options: BuildImageOptions): Promise<ImageBuild> {
    const uri = requested.uri;
    // A dry run touches nothing: no daemon call at all, the URI it would produce.
    if (options.dryRun) return { uri };
    if (!requested.needsBuild) return { uri };
    // One source snapshot for every stage and platform of this build (the engine's pinned image
    // already has one; a direct call gets it here).
    const image = pinSources(requested);
    const { signal, onEvent } = options;
    const abortError = () => new CancelledError(`Build of ${uri} cancelled`);
    if (signal?.aborted) throw abortError();

    // Values for the image's declared build secrets (MissingSecretError before touching the daemon).
    const secrets = resolveBuildSecrets(image, options.secrets, this.env);
    const daemon = DockerDaemon.fromEnv(this.env);
    const info = await daemon.describe(signal);
    await this.sweepOrphans(daemon, uri, onEvent);
    const buildkit = this.options.buildkit ?? (this.env.DOCKER_BUILDKIT === "0" ? false : info.buildkit);
    const labels = await provenanceLabels(image);
    const repository = image.registry ? `${image.registry}/${image.name}` : image.name;
    const tag = image.tag;
    const platforms = [...image.platform];
    const incremental = this.options.incremental ?? !/^(0|false|no|off)$/i.test(this.env.KILN_DOCKER_INCREMENTAL ?? "");
    const startedAt = Date.now();
    const built: BuiltPlatform[] = [];

    const idleTimeoutMs = pushIdleTimeoutMs(this.options.pushIdleTimeoutMs, this.env);
    // Present exactly when the image has a registry; resolved inside the try so a failing
    // credential provider surfaces as its typed AuthError.
    let auth: RegistryAuth | undefined;
    // Exact secret values first: the generic credential patterns could alter a line before it is matched.
    const redactValues = secretRedactor(secrets.values()); // the needles once per build, not per log line
    const redact = (text: string) => redactSecrets(scrubSecrets(redactValues(text), auth?.secrets ?? []));
    const common = {
      image,
      uri,
      buildkit,
      labels,
      networkMode: this.options.networkMode ?? (this.env.KILN_DOCKER_NETWORK || undefined),
      noCache: this.options.noCache,
      pull: this.options.pull,
      signal,
      onEvent,
      redact,
      incremental,
      built,
      orphans: this.orphans,
      secrets,
    };

    try {
      if (image.registry) {
        const host = registryHost(image.registry);
        auth = encodeRegistryAuth(host, await resolveRegistryCredentials(host, { credentials: this.options.credentials, env: this.env }));
      }
      let result: ImageBuild;
      if (platforms.length === 1) {
        const platform = platforms[0]!;
        await buildPlatform(daemon, { ...common, platform, tagRef: `${repository}:${tag}` });
        if (!auth) result = { uri };
        else {
          const pushed = await pushTag(daemon, {
            repository,
            tag,
            registry: auth.registry,
            registryAuth: auth.header,
            image: uri,
            onEvent,
            signal,
            redact,
            idleTimeoutMs,
            beforePush: options.beforePush,
          });
          emit(onEvent, { type: "push.done", image: uri, digest: pushed.digest, platform });
          result = { uri, digest: pushed.digest };
        }
      } else {
        result = await this.buildMultiPlatform(daemon, info, image, platforms, {
          ...common,
          repository,
          tag,
          auth,
          idleTimeoutMs,
          force: options.force ?? false,
          beforePush: options.beforePush,
        });
      }
      if (incremental && buildsInStages(image.spec) && built.length > 0) {
        await pruneStages(daemon, {
          repository: stageRepository(image.name),
          keep: new Set(built.flatMap((b) => b.stageRefs)),
          platforms: built.map((b) => b.platform),
          startedAt,
          graceMs: this.options.stagePruneGraceMs,
        });
      }
      return result;
    } catch (error) {
      if (signal?.aborted && !CancelledError.isInstance(error)) throw new CancelledError(`Build of ${uri} cancelled`, { cause: error });
      if (KilnError.isInstance(error)) throw error;
      throw daemon.translate(error, signal);
    }
  }

  /**
   * Removes the step containers earlier builds left on this daemon when they lost it mid-step
   * (orphanContainers.ts): before this builder's first build — one directory read when there is no
   * record — and again after one of its own builds recorded one. Concurrent builds share the sweep;
   * it never fails a build (each request is time-bounded, records stay when the daemon does not answer).
   */
  private sweepOrphans(daemon: DockerDaemon, uri: string, onEvent: BuildImageOptions["onEvent"]): Promise<unknown> {
    if (!this.orphanSweep || this.orphanSweepAtWrites !== this.orphans.writes) {
      this.orphanSweepAtWrites = this.orphans.writes;
      this.orphanSweep = sweepOrphanContainers(daemon, this.orphans, { image: uri, onEvent });
    }
    return this.orphanSweep;
  }

  /**
   * One build per platform, each under a per-platform tag (`<tag>-linux-arm64`); with a registry,
   * each is pushed and an OCI index joins them under the image's own tag. Per-platform images
   * already in the registry (from an earlier, partly failed run of the same content tag) are reused,
   * unless the build is forced or asked for a fresh base (`noCache`, `pull`).
   */
  private async buildMultiPlatform(
    daemon: DockerDaemon,
    info: DaemonInfo,
    image: Image,
    platforms: Architecture[],
    common: Omit<PlatformBuildOptions, "platform" | "tagRef"> & {
      repository: string;
      tag: string;
      auth: RegistryAuth | undefined;
      idleTimeoutMs: number;
      force: boolean;
      beforePush: BuildImageOptions["beforePush"];
    },
  ): Promise<ImageBuild> {
    const { repository, tag, auth, onEvent, signal, redact, idleTimeoutMs, force, beforePush } = common;
    const uri = image.uri;

    if (!auth) {
      // Kept locally: a daemon holds one image per tag, so each platform keeps its own tag and the
      // image's tag points at the daemon's native platform (else the first one).
      let nativeId: string | undefined;
      for (const platform of platforms) {
        const outcome = await buildPlatform(daemon, { ...common, platform, tagRef: `${repository}:${platformTag(tag, platform)}` });
        if (!nativeId || platform === `${info.os}/${info.arch}`) nativeId = outcome.imageId;
      }
      const docker = await daemon.docker();
      await docker.getImage(nativeId!).tag({ repo: repository, tag });
      return { uri };
    }

    const registry = auth.registry;
    // Reusing per-platform images is only safe under the content tag (an explicit tag may hide new
    // content) and when nothing asks for a fresh build. The engine pins the content tag explicitly,
    // so "is the content tag" is decided by computing it, not by the tag being unset.
    const reusable =
      !force &&
      !this.options.noCache &&
      !this.options.pull &&
      (image.spec.tag === undefined || image.spec.tag === (snapshotOf(image)?.tag ?? computeTag(image)));
    const present = reusable ? await presentPlatformManifests(this.registryClient, repository, tag, platforms) : new Map<Architecture, PlatformManifest>();
    const missing = platforms.filter((p) => !present.has(p));
    if (present.size > 0) emit(onEvent, { type: "build.platforms-present", image: uri, present: [...present.keys()], missing });

    const manifests = new Map(present);
    for (const platform of missing) {
      const archTag = platformTag(tag, platform);
      await buildPlatform(daemon, { ...common, platform, tagRef: `${repository}:${archTag}` });
      const pushed = await pushTag(daemon, {
        repository,
        tag: archTag,
        registry,
        registryAuth: auth.header,
        image: uri,
        onEvent,
        signal,
        redact,
        idleTimeoutMs,
        beforePush,
      });
      emit(onEvent, { type: "push.done", image: uri, digest: pushed.digest, platform });
      manifests.set(platform, await pushedManifest(this.registryClient, { repository, registry, ...pushed }, signal));
    }
    signal?.throwIfAborted();
    const index = assembleIndex(platforms.map((p) => [p, manifests.get(p)!] as const));
    await beforePush?.(); // the index is a push too: not under a lost lease
    const digest = await this.registryClient.putManifest(`${repository}:${tag}`, index.body, index.mediaType);
    emit(onEvent, { type: "push.done", image: uri, digest });
    return { uri, digest };
  }
}

interface PlatformBuildOptions extends BuildOneOptions {
  incremental: boolean;
  /** Filled in as platforms are built. */
  built: BuiltPlatform[];
}

/** One platform: in stages (incremental) or in one go. */
async function buildPlatform(daemon: DockerDaemon, { incremental, built, ...options }: PlatformBuildOptions): Promise<{ imageId: string }> {
  if (!incremental) return buildOne(daemon, options);
  const outcome = await buildIncremental(daemon, options);
  built.push({ platform: options.platform, stageRefs: outcome.stageRefs });
  return outcome;
}
