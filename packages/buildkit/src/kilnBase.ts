/**
 * An image built on a Kiln image (core's graph.ts) names that base in `FROM`. A standalone buildkitd
 * pulls bases from registries: a Kiln base declared without a registry lives only in a local daemon,
 * where only the Docker Engine's own BuildKit sees it.
 */
import type { Image } from "@kiln/core";

/** Why a buildkitd that is not the Docker Engine cannot read this image's Kiln base, or undefined. */
export function localOnlyKilnBase(image: Image): string | undefined {
  const base = image.spec.base;
  if (base.kind !== "image" || base.image === undefined) return undefined;
  const first = base.ref.split("/")[0]!;
  const hasRegistry = base.ref.includes("/") && (first.includes(".") || first.includes(":") || first === "localhost");
  if (hasRegistry) return undefined;
  return `its base image ${base.ref} is a Kiln image without a registry (kept in a local daemon), which a standalone buildkitd cannot pull; give the base a registry (or set a default registry), or build with the Docker Engine`;
}
