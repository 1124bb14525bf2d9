/**
 * The oci builder's registry checker: core's `checkImage` (HEAD, then platforms from the index or
 * config, each requested platform's child still held) with the builder's registry client; the
 * engine's `onEvent` goes to it, so a 429 or a retried 503 shows as registry.ratelimit /
 * registry.retry while the check waits. An `oci:<dir>` target is a layout on this machine, not a
 * registry: OciLayoutImageChecker answers it.
 */
import { isOciLayoutTarget, type Architecture, type ImageChecker, type ImageCheckOptions } from "@kiln/core";
import { checkImage, type RegistryClient } from "@kiln/core/plugin";

export class OciRegistryImageChecker implements ImageChecker {
  readonly name = "oci-registry";
  constructor(private readonly client: RegistryClient) {}

  answersFor(repository: string): boolean {
    return !isOciLayoutTarget(repository);
  }

  async imageExists(repository: string, tag: string, arch?: readonly Architecture[], options?: ImageCheckOptions): Promise<string | null> {
    if (isOciLayoutTarget(repository)) return null;
    const result = await checkImage(`${repository}:${tag}`, {
      client: this.client,
      platforms: arch ?? [],
      signal: options?.signal,
      ...(options?.onEvent ? { onEvent: options.onEvent } : {}),
    });
    return result.present ? `${repository}:${tag}` : null;
  }
}
