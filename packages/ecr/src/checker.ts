/**
 * EcrImageChecker: "is <repository>:<tag> in ECR for every requested platform?" through the ECR API
 * (BatchGetImage), so it needs no `docker login` — only the AWS credentials the user already has.
 *
 * Answers: the image URI (present for all platforms), null (absent: no such tag, no such
 * repository, a platform missing, or a platform the index lists whose manifest the repository no
 * longer holds), or a thrown KilnError when it could not tell (throttled after the SDK's retries,
 * access denied, network) — never a guess.
 */
import { BatchGetImageCommand, type ECRClient } from "@aws-sdk/client-ecr";
import {
  CancelledError,
  CheckFailedError,
  DEFAULT_PLATFORMS,
  RateLimitError,
  ValidationError,
  type Architecture,
  type ImageChecker,
  type ImageCheckOptions,
} from "@kiln/core";
import { MANIFEST_MEDIA_TYPES, defaultCheckerInstance, missingPlatforms, platformOfConfig } from "@kiln/core/plugin";
import { awsErrorName, toKilnError } from "./awsErrors.js";
import { EcrClientPool, type EcrClientOptions } from "./client.js";
import { fetchConfigPlatform, type FetchLike } from "./configBlob.js";
import { platformsWithMissingChildren } from "./indexChildren.js";
import { ecrTimeoutError, requestDeadline, resolveDeadline, type EcrDeadlineSetting } from "./deadline.js";
import { assertRegistryId, assertTag, ecrRegistryHost, parseEcrHost, splitRepository, type EcrRegistry } from "./host.js";
import { configDigestOf, indexPlatforms, isIndexManifest } from "./platforms.js";
import { deliverWarning, type EcrWarningListener } from "./warnings.js";

export interface EcrImageCheckerOptions extends EcrClientOptions {
  /**
   * The registry (AWS account id) for repositories given without a host, e.g. a shared account's
   * registry. A repository's ECR host names its own registry id, which is always sent.
   */
  registryId?: string;
  /** Told when a repository does not exist (the answer is "absent", with a hint to create it). */
  onWarning?: EcrWarningListener;
  /** HTTP client for config blob downloads (default: global fetch). */
  fetch?: FetchLike;
  /**
   * Deadline of each ECR request (BatchGetImage, GetDownloadUrlForLayer, the config blob download),
   * the SDK's retries included: default KILN_REGISTRY_TIMEOUT_MS, else 30 s. Past it the check
   * throws a RegistryTimeoutError ("could not tell").
   */
  timeoutMs?: number;
}

interface Target {
  repositoryName: string;
  registryId?: string;
  registry?: EcrRegistry;
}

export class EcrImageChecker implements ImageChecker {
  /** Its registered name (package.json `kiln.imageCheckers`), shown in check events. */
  readonly name = "ecr";
  private readonly pool: EcrClientPool;
  private deadlineSetting: EcrDeadlineSetting | undefined;

  constructor(private readonly options: EcrImageCheckerOptions = {}) {
    if (options.registryId !== undefined) assertRegistryId(options.registryId);
    this.pool = new EcrClientPool(options);
  }

  /**
   * The guide's class form: answered by core's one default instance of the class (default options:
   * standard AWS chain, the host's region).
   */
  static imageExists(repository: string, tag: string, arch?: readonly Architecture[], options?: ImageCheckOptions): Promise<string | null> {
    return defaultCheckerInstance(EcrImageChecker).imageExists(repository, tag, arch, options);
  }

  /**
   * `options.signal` is handed to every SDK call (`send(command, { abortSignal })`) and to the config
   * blob download, so a cancelled check closes its connection at once; it then rejects with a
   * CancelledError, never answering "absent".
   */
  async imageExists(
    repository: string,
    tag: string,
    arch: readonly Architecture[] = DEFAULT_PLATFORMS,
    options: ImageCheckOptions = {},
  ): Promise<string | null> {
    const { signal } = options;
    try {
      return await this.check(repository, tag, arch, signal);
    } catch (error) {
      if (signal?.aborted) {
        throw CancelledError.isInstance(error)
          ? error
          : new CancelledError(`ECR check of ${repository}:${tag}: cancelled`, {
              cause: signal.reason,
              hint: "The check was cancelled (AbortSignal, Ctrl-C or SIGTERM); nothing was concluded about the image.",
              details: { repository, tag },
            });
      }
      throw error;
    }
  }

  private async check(repository: string, tag: string, arch: readonly Architecture[], signal: AbortSignal | undefined): Promise<string | null> {
    signal?.throwIfAborted();
    assertTag(tag);
    const target = this.resolve(repository);
    const client = this.pool.get(target.registry ?? {});
    const details: Record<string, unknown> = {
      repository: target.repositoryName,
      tag,
      ...(target.registryId ? { registryId: target.registryId } : {}),
      ...(target.registry ? { region: target.registry.region } : {}),
    };

    let response;
    const deadline = this.deadline();
    const request = requestDeadline(signal, deadline);
    try {
      response = await client.send(
        new BatchGetImageCommand({
          ...(target.registryId ? { registryId: target.registryId } : {}),
          repositoryName: target.repositoryName,
          imageIds: [{ imageTag: tag }],
          acceptedMediaTypes: [...MANIFEST_MEDIA_TYPES],
        }),
        { abortSignal: request.signal },
      );
    } catch (error) {
      if (request.expired()) throw ecrTimeoutError(`ECR BatchGetImage for ${target.repositoryName}:${tag}`, deadline, details, error);
      const name = awsErrorName(error);
      if (name === "ImageNotFoundException") return null;
      if (name === "RepositoryNotFoundException") {
        this.warnRepositoryNotFound(target, details);
        return null;
      }
      throw toKilnError(error, `BatchGetImage for ${target.repositoryName}:${tag}`, details);
    }

    const failure = response.failures?.[0];
    if (failure && !response.images?.length) {
      if (failure.failureCode === "ImageNotFound") return null;
      const facts = { ...details, failureCode: failure.failureCode, failureReason: failure.failureReason };
      if (failure.failureCode === "UpstreamTooManyRequests") {
        throw new RateLimitError(`ECR's upstream registry throttled ${target.repositoryName}:${tag}; could not tell whether it exists`, {
          hint: "Retry later; the pull-through cache's upstream registry is rate limiting.",
          details: facts,
        });
      }
      throw new CheckFailedError(
        `ECR could not return ${target.repositoryName}:${tag} (${failure.failureCode ?? "unknown failure"}: ${failure.failureReason ?? "no reason given"})`,
        { hint: "Check the tag and the repository's KMS/pull-through settings; the image's presence is unknown.", details: facts },
      );
    }

    const image = response.images?.[0];
    if (!image?.imageManifest) {
      throw new CheckFailedError(`ECR returned neither an image nor a failure for ${target.repositoryName}:${tag}`, {
        hint: "Retry; if it persists, report it with the request details.",
        details,
      });
    }

    const uri = await this.uriOf(client, target, image.registryId, tag);
    if (arch.length === 0) return uri;
    const { platforms: present, index } = await this.platformsOf(client, target, image.imageManifest, image.imageManifestMediaType, details, signal);
    if (missingPlatforms(arch, present).length > 0) return null;
    if (!index) return uri;
    // An index is present only if the platforms in it are: each requested child must still be held.
    const broken = await platformsWithMissingChildren({
      client,
      ...(target.registryId ? { registryId: target.registryId } : {}),
      repositoryName: target.repositoryName,
      index,
      platforms: arch,
      details,
      deadline,
      ...(signal ? { signal } : {}),
    });
    return broken.length === 0 ? uri : null;
  }

  /**
   * True when this checker can answer for `repository`: one whose host is an ECR host (or a
   * configured alias), or a bare name (`team/app`) when `registryId` or `region` was set explicitly.
   * Without either option a bare name says nothing about ECR — it is a local-only image or a
   * Docker Hub name — so it is not claimed (it would be looked up in the default account/region).
   * The engine asks only checkers that answer for a repository (and strict mode counts only them).
   */
  answersFor(repository: string): boolean {
    try {
      const { host } = splitRepository(repository);
      if (host === undefined) return this.options.registryId !== undefined || this.options.region !== undefined;
      return parseEcrHost(host, this.options.registryAliases) !== undefined;
    } catch {
      return false;
    }
  }

  /** @deprecated Use `answersFor` (the name every checker uses); kept for one release. */
  handles(repository: string): boolean {
    return this.answersFor(repository);
  }

  /** True when `repository`'s host is an ECR host or a configured alias (bare names: false). */
  hasEcrHost(repository: string): boolean {
    try {
      const { host } = splitRepository(repository);
      return host !== undefined && parseEcrHost(host, this.options.registryAliases) !== undefined;
    } catch {
      return false;
    }
  }

  /** The request deadline, read once (an unreadable KILN_REGISTRY_TIMEOUT_MS fails the check, not the constructor). */
  private deadline(): EcrDeadlineSetting {
    this.deadlineSetting ??= resolveDeadline(this.options.timeoutMs);
    return this.deadlineSetting;
  }

  /** Releases the SDK clients' sockets. */
  destroy(): void {
    this.pool.destroy();
  }

  private resolve(repository: string): Target {
    const { host, repositoryName } = splitRepository(repository);
    if (host === undefined) {
      return { repositoryName, ...(this.options.registryId ? { registryId: this.options.registryId } : {}) };
    }
    const registry = parseEcrHost(host, this.options.registryAliases);
    if (!registry) {
      throw new CheckFailedError(`${host} is not an Amazon ECR registry host; the ECR checker cannot tell whether ${repository} exists`, {
        hint: "ECR hosts look like <account>.dkr.ecr.<region>.amazonaws.com. Use a registry checker for other registries, or map this host with the `registryAliases` option.",
        details: { repository, host },
      });
    }
    if (this.options.registryId && this.options.registryId !== registry.registryId) {
      throw new ValidationError("registryId", this.options.registryId, `conflicts with the account ${registry.registryId} in the repository host ${host}`, {
        hint: "Leave registryId unset for repositories with an ECR host; it applies to repositories given without one.",
      });
    }
    return { repositoryName, registryId: registry.registryId, registry };
  }

  private async uriOf(client: ECRClient, target: Target, returnedRegistryId: string | undefined, tag: string): Promise<string> {
    if (target.registry) return `${target.registry.host}/${target.repositoryName}:${tag}`;
    const registryId = target.registryId ?? returnedRegistryId;
    const region = await this.pool.regionOf(client);
    if (registryId && region) return `${ecrRegistryHost({ registryId, region, fips: false, dualStack: false })}/${target.repositoryName}:${tag}`;
    return `${target.repositoryName}:${tag}`;
  }

  private async platformsOf(
    client: ECRClient,
    target: Target,
    manifestText: string,
    mediaType: string | undefined,
    details: Record<string, unknown>,
    signal: AbortSignal | undefined,
  ): Promise<{ platforms: string[]; index?: Record<string, unknown> }> {
    let manifest: Record<string, unknown>;
    try {
      manifest = JSON.parse(manifestText) as Record<string, unknown>;
    } catch (error) {
      throw new CheckFailedError(`ECR returned a manifest that is not JSON for ${target.repositoryName}`, {
        hint: "Retry; if it persists, inspect the image with `docker manifest inspect`.",
        cause: error,
        details,
      });
    }
    if (isIndexManifest(manifest, mediaType)) return { platforms: indexPlatforms(manifest), index: manifest };
    const digest = configDigestOf(manifest);
    if (!digest) {
      throw new CheckFailedError(`The manifest of ${target.repositoryName} has no config blob, so its platform is unknown`, {
        hint: "Only container image manifests (Docker v2 schema 2 or OCI) carry a platform.",
        details: { ...details, mediaType },
      });
    }
    const platform = await fetchConfigPlatform({
      client,
      ...(target.registryId ? { registryId: target.registryId } : {}),
      repositoryName: target.repositoryName,
      digest,
      ...(this.options.fetch ? { fetch: this.options.fetch } : {}),
      ...(signal ? { signal } : {}),
      deadline: this.deadline(),
      details,
    });
    return { platforms: [platformOfConfig(platform)] };
  }

  private warnRepositoryNotFound(target: Target, details: Record<string, unknown>): void {
    const registryFlag = target.registryId ? ` --registry-id ${target.registryId}` : "";
    const regionFlag = target.registry ? ` --region ${target.registry.region}` : "";
    deliverWarning(this.options.onWarning, {
      code: "KILN_ECR_REPOSITORY_NOT_FOUND",
      message: `ECR repository ${target.repositoryName} does not exist${target.registryId ? ` in registry ${target.registryId}` : ""}; the image is absent`,
      hint: `Create it before pushing: aws ecr create-repository --repository-name ${target.repositoryName}${regionFlag}${registryFlag} (or enable ECR's create-on-push repository creation template).`,
      details,
    });
  }
}
