/**
 * Platforms of an image stored in ECR, read with core's normaliser (so `aarch64`, `arm64/v8` and
 * `linux/arm64` compare equal everywhere in Kiln): an index lists them (attestation entries
 * excluded), a single-arch manifest carries its platform only in its config blob.
 */
import { isIndexMediaType, platformsOfIndex } from "@kiln/core/plugin";

type IndexDocument = Parameters<typeof platformsOfIndex>[0];

/** True for a manifest list or OCI index (by its media type, or by its shape when ECR gave none). */
export function isIndexManifest(manifest: Record<string, unknown>, mediaType?: string): boolean {
  if (isIndexMediaType(mediaType) || isIndexMediaType(manifest.mediaType as string | undefined)) return true;
  return Array.isArray(manifest.manifests) && !("config" in manifest);
}

/** The normalised platforms an index provides. */
export function indexPlatforms(manifest: Record<string, unknown>): string[] {
  const manifests = Array.isArray(manifest.manifests) ? (manifest.manifests as IndexDocument["manifests"]) : [];
  return platformsOfIndex({ manifests });
}

/** The config digest of a single-arch manifest. */
export function configDigestOf(manifest: Record<string, unknown>): string | undefined {
  const config = manifest.config as { digest?: unknown } | undefined;
  return typeof config?.digest === "string" ? config.digest : undefined;
}
