/**
 * The oci builder's registry checker: core's `checkImage` (HEAD, then platforms from the index or
 * config, each requested platform's child still held) with the builder's registry client. An
 * `oci:<dir>` target is a layout on this machine, not a registry: OciLayoutImageChecker answers it.
 */
import { checkImage, isOciLayoutTarget, type Architecture, type ImageChecker, type ImageCheckOptions, type RegistryClient } from "@kiln/core";

export class OciRegistryImageChecker implements ImageChecker {
  readonly name = "oci-registry";
  constructor(private readonly client: RegistryClient) {}

  answersFor(repository: string): boolean {
    return !isOciLayoutTarget(repository);
  }

  async imageExists(repository: string, tag: string, arch?: readonly Architecture[], options?: ImageCheckOptions): Promise<string | null> {
    if (isOciLayoutTarget(repository)) return null;
    const result = await checkImage(`${repository}:${tag}`, { client: this.client, platforms: arch ?? [], signal: options?.signal });
    return result.present ? `${repository}:${tag}` : null;
  }
}
