/**
 * Manifest and index writes, in the order that never leaves a tag naming something missing: every
 * child manifest is put by its digest first (each only after its blobs are held — the caller's
 * part), and the tag last — on the index for several platforms, on the single manifest otherwise.
 * Before the tag is written each child is HEADed: a registry that accepted a child but does not
 * serve it fails the push here, not a later pull.
 */
import type { RegistryRequestOptions } from "./abort.js";
import { describeRef, sha256, toReference, type RegistryClient, type RegistryReference } from "./client.js";

export interface ManifestToPut {
  /** Exact bytes (canonical JSON): the digest is theirs. */
  body: Buffer;
  mediaType: string;
}

export interface PutImageOptions extends RegistryRequestOptions {
  /** Called right before the tag is written (a lease check); the tag is not written when it rejects. */
  beforeTag?: () => Promise<void>;
}

/**
 * Puts `children` by digest, then `tagged` (the index, or the one manifest) under `reference`'s tag.
 * Returns the digest the tag names.
 */
export async function putImageManifests(
  client: RegistryClient,
  reference: string | RegistryReference,
  children: readonly ManifestToPut[],
  tagged: ManifestToPut,
  options: PutImageOptions = {},
): Promise<string> {
  const ref = toReference(reference);
  if (!ref.tag) {
    throw client.registryError(`${describeRef(ref)}: no tag to put the image under`, "Give the reference a tag.", { registry: ref.registry });
  }
  for (const child of children) {
    const digest = await client.putManifest(
      { registry: ref.registry, repository: ref.repository, digest: sha256(child.body) },
      child.body,
      child.mediaType,
      options,
    );
    const held = await client.headManifest({ registry: ref.registry, repository: ref.repository, digest }, options);
    if (held === null) {
      throw client.registryError(
        `${describeRef(ref)}: the registry accepted manifest ${digest} but does not serve it`,
        "The tag was not written; push again.",
        { registry: ref.registry, repository: ref.repository, digest },
      );
    }
  }
  await options.beforeTag?.();
  return client.putManifest(ref, tagged.body, tagged.mediaType, options);
}
