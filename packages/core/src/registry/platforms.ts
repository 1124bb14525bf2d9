/**
 * Reading and normalising the platforms an image provides. Registries and build tools spell the
 * same CPU several ways (`aarch64`, `arm64/v8`, `x86_64`); Kiln compares canonical `os/arch[/variant]`
 * strings, with arm64's implied `v8` variant dropped so `linux/arm64/v8` equals `linux/arm64`.
 */
import { isIndexMediaType } from "./mediaTypes.js";

const ARCH_ALIASES: Record<string, string> = {
  x86_64: "amd64",
  "x86-64": "amd64",
  x64: "amd64",
  amd64: "amd64",
  aarch64: "arm64",
  arm64: "arm64",
  armhf: "arm",
  armel: "arm",
  i386: "386",
  i686: "386",
};

export interface PlatformFields {
  os?: string;
  architecture?: string;
  variant?: string;
}

/** `linux/aarch64` → `linux/arm64`; `arm64/v8` → `linux/arm64`; `x86_64` → `linux/amd64`. */
export function normalizePlatform(platform: string | PlatformFields): string {
  let os: string | undefined;
  let arch: string | undefined;
  let variant: string | undefined;
  if (typeof platform === "string") {
    const parts = platform.trim().toLowerCase().split("/").filter(Boolean);
    // "arm64", "arm64/v8" have no os; "linux/arm64/v8" has one.
    if (parts.length >= 1 && (parts[0] === "linux" || parts[0] === "windows" || parts[0] === "darwin" || parts[0] === "unknown")) {
      [os, arch, variant] = parts;
    } else {
      [arch, variant] = parts;
    }
  } else {
    os = platform.os?.toLowerCase();
    arch = platform.architecture?.toLowerCase();
    variant = platform.variant?.toLowerCase();
  }
  os = os || "linux";
  arch = arch ? (ARCH_ALIASES[arch] ?? arch) : "unknown";
  if (arch === "arm64" && variant === "v8") variant = undefined;
  if (arch === "amd64" && variant === "v1") variant = undefined;
  return variant ? `${os}/${arch}/${variant}` : `${os}/${arch}`;
}

interface DescriptorLike {
  mediaType?: string;
  digest?: string;
  platform?: PlatformFields;
  annotations?: Record<string, string>;
}

/** True for BuildKit's attestation entries (`unknown/unknown`, or the docker reference-type annotation). */
export function isAttestationDescriptor(descriptor: DescriptorLike): boolean {
  if (descriptor.annotations?.["vnd.docker.reference.type"] === "attestation-manifest") return true;
  const p = descriptor.platform;
  return !p || p.os === "unknown" || p.architecture === "unknown";
}

/** Platforms listed by an OCI index / Docker manifest list, attestation entries left out, deduplicated. */
export function platformsOfIndex(index: { manifests?: DescriptorLike[] }): string[] {
  const found = new Set<string>();
  for (const descriptor of index.manifests ?? []) {
    if (isAttestationDescriptor(descriptor)) continue;
    found.add(normalizePlatform(descriptor.platform!));
  }
  return [...found];
}

/**
 * The child manifests an index lists for each of `platforms` (normalised; attestation entries left
 * out). A platform listed twice maps to both digests; one the index does not list is left out.
 */
export function childDigestsByPlatform(index: { manifests?: DescriptorLike[] }, platforms: readonly string[]): Map<string, string[]> {
  const wanted = new Set(platforms.map((p) => normalizePlatform(p)));
  const children = new Map<string, string[]>();
  for (const descriptor of index.manifests ?? []) {
    if (isAttestationDescriptor(descriptor) || typeof descriptor.digest !== "string") continue;
    const platform = normalizePlatform(descriptor.platform!);
    if (!wanted.has(platform)) continue;
    children.set(platform, [...(children.get(platform) ?? []), descriptor.digest]);
  }
  return children;
}

/** The platform recorded in a single-arch image's config blob. */
export function platformOfConfig(config: PlatformFields): string {
  if (!config.architecture) return "unknown/unknown";
  return normalizePlatform(config);
}

/**
 * Platforms of a manifest document: read from the index itself, or (single-arch manifest) from the
 * config blob fetched with `readConfig(digest)`.
 */
export async function platformsOf(
  manifest: { mediaType?: string; manifests?: DescriptorLike[]; config?: { digest?: string } },
  mediaType: string | undefined,
  readConfig: (digest: string) => Promise<PlatformFields>,
): Promise<string[]> {
  const type = mediaType ?? manifest.mediaType;
  if (isIndexMediaType(type) || (type === undefined && Array.isArray(manifest.manifests))) {
    return platformsOfIndex(manifest);
  }
  const digest = manifest.config?.digest;
  if (!digest) return [];
  return [platformOfConfig(await readConfig(digest))];
}

/** Requested platforms the image does not provide (compared in normalised form). */
export function missingPlatforms(requested: readonly string[], available: readonly string[]): string[] {
  const have = new Set(available.map((p) => normalizePlatform(p)));
  return requested.filter((p) => !have.has(normalizePlatform(p)));
}
