/**
 * DockerHubImageChecker: is `repository:tag` on Docker Hub for every requested platform?
 *
 * Names are normalised as the docker CLI does (`python` → `docker.io/library/python`;
 * `index.docker.io/…` and `registry-1.docker.io/…` are Docker Hub too). The API is
 * registry-1.docker.io with tokens from auth.docker.io, asked up front (the endpoint is known, so no
 * 401 round trip); both are overridable so tests run against local servers. Existence is a manifest
 * HEAD, which Docker Hub does not count as a pull; the manifest itself is read only to compare
 * platforms. Credentials: the user's docker config (`https://index.docker.io/v1/`), credential
 * helpers, or a registered provider; anonymous otherwise.
 *
 * Docker Hub's 401 for an unreadable repository. Asked anonymously about a repository that does not
 * exist, Docker Hub answers 401 `insufficient_scope` — exactly what it answers for a private one; it
 * will not say which. Decision: for an ANONYMOUS reader this checker reports the image ABSENT
 * (returns null). Reasons: the image is certainly not available to this reader; the usual case is a
 * new repository that does not exist yet (the first build of a new image name), where "could not
 * tell" would fail strict CI runs for no reason; and a wrong "absent" only costs a build, whose push
 * then fails loudly with an auth error if the repository is someone else's private one — while a
 * wrong "present" would silently skip a needed build, which this checker never risks. With
 * credentials, a denial is not ambiguous in the same way (your own namespace answers 404 when
 * absent), so it is an AuthError ("could not tell"). `anonymousDenial: "error"` opts out.
 */
import { DEFAULT_PLATFORMS, InvalidReferenceError, type Architecture, type ImageChecker, type ImageCheckOptions } from "@kiln/core";
import { checkImage, defaultCheckerInstance, isDockerHub, RegistryClient, type RegistryClientOptions } from "@kiln/core/plugin";
import { referenceFor, registryOf } from "./target.js";

export const DOCKER_HUB_REGISTRY_URL = "https://registry-1.docker.io";
export const DOCKER_HUB_AUTH_REALM = "https://auth.docker.io/token";
export const DOCKER_HUB_AUTH_SERVICE = "registry.docker.io";

export interface DockerHubImageCheckerOptions {
  /** Registry API base URL (default https://registry-1.docker.io). */
  registryUrl?: string;
  /**
   * Token endpoint asked up front (default https://auth.docker.io/token when `registryUrl` is the
   * default; with a custom `registryUrl` and no realm, the realm is learned from the 401 challenge).
   */
  authRealm?: string;
  authService?: string;
  /** What an anonymous reader's 401/403 means: "absent" (default, see above) or "error". */
  anonymousDenial?: "absent" | "error";
  /** Options for the underlying RegistryClient (credentials, retries, timeouts, onEvent, …). */
  clientOptions?: Omit<RegistryClientOptions, "endpoints" | "anonymousDenialMeansAbsent">;
}

export class DockerHubImageChecker implements ImageChecker {
  /** Its registered name (package.json `kiln.imageCheckers`), shown in check events. */
  readonly name = "dockerhub";
  readonly client: RegistryClient;

  constructor(options: DockerHubImageCheckerOptions = {}) {
    const registryUrl = (options.registryUrl ?? DOCKER_HUB_REGISTRY_URL).replace(/\/+$/, "");
    const defaultUrl = registryUrl === DOCKER_HUB_REGISTRY_URL;
    const tokenRealm = options.authRealm ?? (defaultUrl ? DOCKER_HUB_AUTH_REALM : undefined);
    const tokenService = options.authService ?? (tokenRealm ? DOCKER_HUB_AUTH_SERVICE : undefined);
    const anonymousAbsent = (options.anonymousDenial ?? "absent") === "absent";
    this.client = new RegistryClient({
      ...options.clientOptions,
      endpoints: { "docker.io": { url: registryUrl, ...(tokenRealm ? { tokenRealm } : {}), ...(tokenService ? { tokenService } : {}) } },
      anonymousDenialMeansAbsent: (registry) => anonymousAbsent && isDockerHub(registry),
    });
  }

  /** The guide's class form: `DockerHubImageChecker.imageExists(...)`, answered by core's one default instance of the class. */
  static imageExists(repository: string, tag: string, arch?: readonly Architecture[], options?: ImageCheckOptions): Promise<string | null> {
    return defaultCheckerInstance(DockerHubImageChecker).imageExists(repository, tag, arch, options);
  }

  /** Docker Hub's repositories only (`python`, `acme/app`, `docker.io/…`, `index.docker.io/…`): the engine does not ask it about others. */
  answersFor(repository: string): boolean {
    const registry = registryOf(repository);
    return registry !== undefined && isDockerHub(registry);
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
    if (!isDockerHub(ref.registry)) {
      throw new InvalidReferenceError(`${repository} is not a Docker Hub repository (its registry is ${ref.registry})`, {
        hint: 'Use the "registry" checker (RegistryImageChecker) for other registries.',
        details: { field: "repository", value: repository, registry: ref.registry },
      });
    }
    const result = await checkImage(
      { ...ref, registry: "docker.io" },
      { platforms: arch.length ? arch : DEFAULT_PLATFORMS, client: this.client, signal: options.signal, onEvent: options.onEvent },
    );
    return result.present ? `${repository}:${tag}` : null;
  }
}
