/**
 * Multi-platform images: per-platform tags, finding per-platform images already pushed, and the
 * OCI image index that joins them.
 */
import { createHash } from "node:crypto";
import { OCI_INDEX, type Architecture, type RegistryClient } from "@kiln/core";

export interface PlatformManifest {
  digest: string;
  size: number;
  mediaType: string;
}

/** `<tag>-linux-arm64`, kept within the 128-character tag limit. */
export function platformTag(tag: string, platform: Architecture): string {
  const suffix = `-${platform.replace("/", "-")}`;
  return `${tag.slice(0, 128 - suffix.length)}${suffix}`;
}

/** Per-platform manifests already in the registry under their per-platform tags. */
export async function presentPlatformManifests(
  client: RegistryClient,
  repository: string,
  tag: string,
  platforms: readonly Architecture[],
): Promise<Map<Architecture, PlatformManifest>> {
  const found = new Map<Architecture, PlatformManifest>();
  for (const platform of platforms) {
    try {
      const head = await client.headManifest(`${repository}:${platformTag(tag, platform)}`);
      if (head?.digest && head.mediaType && head.size !== undefined) found.set(platform, { digest: head.digest, size: head.size, mediaType: head.mediaType });
    } catch {
      // Could not tell: build that platform.
    }
  }
  return found;
}

/** The OCI index (`application/vnd.oci.image.index.v1+json`) listing one manifest per platform. */
export function assembleIndex(entries: ReadonlyArray<readonly [Architecture, PlatformManifest]>): { body: Buffer; mediaType: string; digest: string } {
  const index = {
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: entries.map(([platform, manifest]) => {
      const [os, architecture] = platform.split("/") as [string, string];
      return { mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.size, platform: { architecture, os } };
    }),
  };
  const body = Buffer.from(JSON.stringify(index));
  return { body, mediaType: OCI_INDEX, digest: `sha256:${createHash("sha256").update(body).digest("hex")}` };
}
