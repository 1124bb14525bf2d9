/**
 * Multi-platform images: per-platform tags, finding per-platform images already pushed, what the
 * registry holds for one just pushed, and the OCI image index that joins them.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { PushFailedError, type Architecture } from "@kiln/core";
import { DOCKER_MANIFEST, OCI_INDEX, type RegistryClient } from "@kiln/core/plugin";

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
export function assembleIndex(entries: ReadonlyArray<readonly [Architecture, PlatformManifest]>): { body: Buffer; mediaType: string } {
  const index = {
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: entries.map(([platform, manifest]) => {
      const [os, architecture] = platform.split("/") as [string, string];
      return { mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.size, platform: { architecture, os } };
    }),
  };
  // Its digest is the one putManifest returns (core computes it and checks the registry's answer).
  return { body: Buffer.from(JSON.stringify(index)), mediaType: OCI_INDEX };
}

/** Pauses between HEADs of a just-pushed manifest that the registry does not answer for yet. */
export const MANIFEST_HEAD_RETRY_DELAYS_MS = [200, 600];

/**
 * The size and media type of a manifest the daemon just pushed, from the registry itself (the index
 * must describe the bytes the registry holds). A registry that still does not hold it after a few
 * short retries fails the push; the Docker v2 media type is assumed only when the registry answered
 * without a Content-Type.
 */
export async function pushedManifest(
  client: Pick<RegistryClient, "headManifest">,
  pushed: { repository: string; registry: string; digest: string; size: number },
  signal?: AbortSignal,
  delaysMs: readonly number[] = MANIFEST_HEAD_RETRY_DELAYS_MS,
): Promise<PlatformManifest> {
  const { repository, registry, digest } = pushed;
  for (let attempt = 0; ; attempt++) {
    const head = await client.headManifest(`${repository}@${digest}`);
    if (head) {
      // Without Content-Length the daemon's own report of the size stands.
      return { digest, size: head.size ?? pushed.size, mediaType: head.mediaType || DOCKER_MANIFEST };
    }
    if (attempt >= delaysMs.length) break;
    await sleep(delaysMs[attempt]!, undefined, { signal });
  }
  throw new PushFailedError(`The registry ${registry} does not hold the pushed manifest ${digest} of ${repository}`, {
    hint: `The daemon reported the push as done, but ${registry} does not serve it; check the registry's storage and health, and run the build again.`,
    details: { registry, repository, digest },
  });
}
