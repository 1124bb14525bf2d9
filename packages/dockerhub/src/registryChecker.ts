/**
 * RegistryImageChecker: the same existence check for any OCI distribution registry — GHCR, Quay,
 * Harbor, ECR's registry endpoint, GitLab, a local registry — named by the repository's host
 * (`ghcr.io/acme/app`). Loopback registries are spoken to over plain HTTP; others listed in
 * `insecureRegistries` / KILN_INSECURE_REGISTRIES too. Any denial is an AuthError ("could not
 * tell"), since outside Docker Hub a missing repository answers 404.
 */
import { DEFAULT_PLATFORMS, type Architecture, type ImageChecker, type ImageCheckOptions } from "@kiln/core";
import { checkImage, defaultCheckerInstance, RegistryClient, type RegistryClientOptions } from "@kiln/core/plugin";
import { referenceFor, registryOf } from "./target.js";

export interface RegistryImageCheckerOptions extends RegistryClientOptions {
  /** Reuse a client (its tokens and connections) instead of building one from these options. */
  client?: RegistryClient;
}

export class RegistryImageChecker implements ImageChecker {
  /** Its registered name (package.json `kiln.imageCheckers`), shown in check events. */
  readonly name = "registry";
  readonly client: RegistryClient;

  constructor(options: RegistryImageCheckerOptions = {}) {
    const { client, ...clientOptions } = options;
    this.client = client ?? new RegistryClient(clientOptions);
  }

  /** The guide's class form: `RegistryImageChecker.imageExists(...)`, answered by core's one default instance of the class. */
  static imageExists(repository: string, tag: string, arch?: readonly Architecture[], options?: ImageCheckOptions): Promise<string | null> {
    return defaultCheckerInstance(RegistryImageChecker).imageExists(repository, tag, arch, options);
  }

  /** Every repository that names a registry — Docker Hub's included — but not an OCI layout directory (`oci:<dir>`) nor an invalid name. */
  answersFor(repository: string): boolean {
    return registryOf(repository) !== undefined;
  }

  /**
   * `repository:tag` when present for every platform in `arch` (default linux/amd64), else null;
   * throws when it cannot tell. `options.signal` aborts the registry request in flight (socket
   * closed, no retry) and rejects with a CancelledError.
   */
  async imageExists(
    repository: string,
    tag: string,
    arch: readonly Architecture[] = DEFAULT_PLATFORMS,
    options: ImageCheckOptions = {},
  ): Promise<string | null> {
    const ref = referenceFor(repository, tag);
    const result = await checkImage(ref, {
      platforms: arch.length ? arch : DEFAULT_PLATFORMS,
      client: this.client,
      signal: options.signal,
      onEvent: options.onEvent,
    });
    return result.present ? `${repository}:${tag}` : null;
  }
}
