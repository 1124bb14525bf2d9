/**
 * An index is present only if the platforms in it are. An OCI index (or Docker manifest list) is a
 * list of pointers: a registry keeps serving it after one of its child manifests was deleted (or
 * when it was pushed without it), and `docker pull --platform` of that platform then fails. So a
 * requested platform counts only when its child manifest is still held: each is asked for by
 * digest with a HEAD (not a pull on Docker Hub). A child the registry says it does not hold makes
 * that platform missing (the build rebuilds it); a child it cannot answer for (5xx, timeout, denial)
 * is a thrown typed error — "could not tell", never "present".
 */
import type { RegistryRequestOptions } from "./abort.js";
import type { RegistryClient, RegistryReference } from "./client.js";
import { childDigestsByPlatform } from "./platforms.js";

/**
 * The requested platforms whose child manifest(s) `index` lists but the registry does not hold.
 * Platforms the index does not list at all are not this function's business (they are missing anyway).
 */
export async function platformsWithMissingChildren(
  client: Pick<RegistryClient, "headManifest">,
  repository: Pick<RegistryReference, "registry" | "repository">,
  index: { manifests?: unknown },
  platforms: readonly string[],
  options: RegistryRequestOptions = {},
): Promise<string[]> {
  const manifests = Array.isArray(index.manifests) ? (index.manifests as Parameters<typeof childDigestsByPlatform>[0]["manifests"]) : [];
  const children = childDigestsByPlatform({ manifests }, platforms);
  const digests = [...new Set([...children.values()].flat())];
  const held = new Map<string, boolean>(
    await Promise.all(
      digests.map(async (digest) => {
        const head = await client.headManifest({ registry: repository.registry, repository: repository.repository, digest }, options);
        return [digest, head !== null] as const;
      }),
    ),
  );
  // A platform listed twice needs every entry: a puller may pick either.
  return [...children].filter(([, list]) => list.some((digest) => !held.get(digest))).map(([platform]) => platform);
}
