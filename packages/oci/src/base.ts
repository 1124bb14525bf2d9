/**
 * The base image, read from its registry: the index (or manifest list) → the child manifest of each
 * requested platform → its config. A requested platform the base does not provide is an error naming
 * the base and the platforms it has — never a silent wrong-architecture image.
 *
 * A base pinned by pinBase arrives as `ref@sha256:…` (core's `baseReference`): the index or manifest is
 * then read by that digest — the GET is verified against it — whatever the tag names now.
 */
import { BuildFailedError, parseReference } from "@kiln/core";
import {
  childDigestsByPlatform,
  isIndexMediaType,
  normalizePlatform,
  platformOfConfig,
  platformsOfIndex,
  type RegistryClient,
  type RegistryReference,
} from "@kiln/core/plugin";

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

export interface BasePlatformImage {
  platform: string;
  /** The base's repository (for cross-repository mounts) — registry and repository. */
  ref: RegistryReference;
  manifestMediaType: string;
  layers: Descriptor[];
  configMediaType: string;
  config: Record<string, unknown>;
}

export async function readBase(
  client: RegistryClient,
  baseRef: string,
  platforms: readonly string[],
  signal?: AbortSignal,
): Promise<Map<string, BasePlatformImage>> {
  const ref = parseReference(baseRef) as RegistryReference;
  const top = await client.getManifest(ref, { signal });
  if (!top) {
    throw new BuildFailedError(`The base image ${baseRef} is not in its registry`, {
      hint: "Check the base reference, or push the base image first.",
      details: { base: baseRef },
    });
  }
  const repo = { registry: ref.registry, repository: ref.repository };
  const out = new Map<string, BasePlatformImage>();
  if (isIndexMediaType(top.mediaType) || Array.isArray(top.manifest.manifests)) {
    const index = top.manifest as { manifests?: Array<{ digest: string; platform?: Record<string, string> }> };
    const children = childDigestsByPlatform(index, platforms);
    for (const platform of platforms) {
      const digest = children.get(normalizePlatform(platform))?.[0];
      if (digest === undefined) throw missingPlatform(baseRef, platform, platformsOfIndex(index));
      const child = await client.getManifest({ ...repo, digest }, { signal });
      if (!child) throw incomplete(baseRef, `its ${platform} manifest ${digest} is missing`);
      out.set(platform, await describeChild(client, repo, platform, child.manifest, child.mediaType, baseRef, signal));
    }
    return out;
  }
  const single = await describeChild(client, repo, "", top.manifest, top.mediaType, baseRef, signal);
  const has = platformOfConfig(single.config as { architecture?: string; os?: string; variant?: string });
  for (const platform of platforms) {
    if (normalizePlatform(platform) !== has) throw missingPlatform(baseRef, platform, [has]);
    out.set(platform, { ...single, platform });
  }
  return out;
}

async function describeChild(
  client: RegistryClient,
  repo: RegistryReference,
  platform: string,
  manifest: Record<string, unknown>,
  mediaType: string | undefined,
  baseRef: string,
  signal: AbortSignal | undefined,
): Promise<BasePlatformImage> {
  const configDescriptor = manifest.config as Descriptor | undefined;
  const layers = (manifest.layers as Descriptor[] | undefined) ?? [];
  if (!configDescriptor?.digest) throw incomplete(baseRef, "its manifest has no config");
  const blob = await client.getBlob(repo, configDescriptor.digest, { signal });
  if (!blob) throw incomplete(baseRef, `its config blob ${configDescriptor.digest} is missing`);
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(blob.toString("utf8")) as Record<string, unknown>;
  } catch {
    throw incomplete(baseRef, `its config blob ${configDescriptor.digest} is not JSON`);
  }
  return {
    platform,
    ref: repo,
    manifestMediaType: mediaType ?? (manifest.mediaType as string | undefined) ?? "application/vnd.oci.image.manifest.v1+json",
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size, ...(l.annotations ? { annotations: l.annotations } : {}) })),
    configMediaType: configDescriptor.mediaType,
    config,
  };
}

function missingPlatform(baseRef: string, platform: string, has: string[]): BuildFailedError {
  return new BuildFailedError(`The base image ${baseRef} has no ${platform} image (it has: ${has.join(", ") || "none"})`, {
    hint: `Build for the platforms the base provides (platform: [${has.map((p) => JSON.stringify(p)).join(", ")}]), or pick a base that has ${platform}.`,
    details: { base: baseRef, platform, available: has },
  });
}

function incomplete(baseRef: string, what: string): BuildFailedError {
  return new BuildFailedError(`The base image ${baseRef} is incomplete in its registry: ${what}`, {
    hint: "Push the base image again.",
    details: { base: baseRef },
  });
}
