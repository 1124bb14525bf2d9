/** Manifest documents as ECR returns them (imageManifest is the raw JSON text). */
import { createHash } from "node:crypto";

export const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
export const DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json";
export const DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json";
export const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";

const digestOf = (text: string) => `sha256:${createHash("sha256").update(text).digest("hex")}`;

export function indexManifest(
  platforms: Array<{ os: string; architecture: string; variant?: string }>,
  options: { mediaType?: string; attestations?: boolean } = {},
): string {
  return indexWithChildren(platforms, options).manifest;
}

export interface ChildManifest {
  digest: string;
  manifest: string;
  mediaType: string;
  platform: { os: string; architecture: string; variant?: string };
}

/** An index and the real single-arch child manifests it points at (what ECR holds by digest). */
export function indexWithChildren(
  platforms: Array<{ os: string; architecture: string; variant?: string }>,
  options: { mediaType?: string; attestations?: boolean } = {},
): { manifest: string; mediaType: string; children: ChildManifest[] } {
  const mediaType = options.mediaType ?? OCI_INDEX;
  const children: ChildManifest[] = platforms.map((platform) => {
    const child = singleArch(platform, mediaType === OCI_INDEX ? OCI_MANIFEST : DOCKER_MANIFEST);
    return { digest: digestOf(child.manifest), manifest: child.manifest, mediaType: child.mediaType, platform };
  });
  const manifests: unknown[] = children.map((child, i) => ({
    mediaType: child.mediaType,
    digest: child.digest,
    size: child.manifest.length,
    platform: platforms[i],
  }));
  if (options.attestations) {
    platforms.forEach((_, i) =>
      manifests.push({
        mediaType: OCI_MANIFEST,
        digest: digestOf(`attestation-${i}`),
        size: 800,
        platform: { os: "unknown", architecture: "unknown" },
        annotations: { "vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": children[i]!.digest },
      }),
    );
  }
  return { manifest: JSON.stringify({ schemaVersion: 2, mediaType, manifests }), mediaType, children };
}

/** A config blob and the single-arch manifest that points at it. */
export function singleArch(platform: { os: string; architecture: string; variant?: string }, mediaType = DOCKER_MANIFEST) {
  const config = JSON.stringify({ ...platform, config: {}, rootfs: { type: "layers", diff_ids: [] } });
  const configDigest = digestOf(config);
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType,
    config: {
      mediaType: mediaType === OCI_MANIFEST ? "application/vnd.oci.image.config.v1+json" : "application/vnd.docker.container.image.v1+json",
      digest: configDigest,
      size: config.length,
    },
    layers: [],
  });
  return { config, configDigest, manifest, mediaType };
}
