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
  const mediaType = options.mediaType ?? OCI_INDEX;
  const manifests: unknown[] = platforms.map((platform, i) => ({
    mediaType: mediaType === OCI_INDEX ? OCI_MANIFEST : DOCKER_MANIFEST,
    digest: digestOf(`image-${i}`),
    size: 500 + i,
    platform,
  }));
  if (options.attestations) {
    platforms.forEach((_, i) =>
      manifests.push({
        mediaType: OCI_MANIFEST,
        digest: digestOf(`attestation-${i}`),
        size: 800,
        platform: { os: "unknown", architecture: "unknown" },
        annotations: { "vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": digestOf(`image-${i}`) },
      }),
    );
  }
  return JSON.stringify({ schemaVersion: 2, mediaType, manifests });
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
