/**
 * Copies one image (a manifest, or an index and its children) from a source reference to a target
 * reference, registry to registry, on core's registry writes:
 *
 * - blobs: by cross-repository mount when source and target are the same registry host (nothing is
 *   transferred), otherwise streamed — GET from the source piped into a chunked upload to the target,
 *   never through the local disk; memory stays at `concurrency` chunks (default 4 × 16 MiB);
 * - digests: every manifest read is checked against its digest, every blob's bytes are hashed while
 *   they pass (a blob whose bytes do not hash to its digest fails with PromotionFailedError, reason
 *   "digest-mismatch"), and the target must store each manifest under the source's digest;
 * - order: blobs, then each child manifest by digest, then the tag (registry/manifestsWrite.ts) — a
 *   failure at any step leaves the target's tag untouched;
 * - platforms: only the requested platforms' children must exist in the source (a source missing one
 *   is PromotionSourceMissingError). Other children the source no longer holds are left out: the
 *   index is then rewritten without them (its digest changes; `reducedIndex` says so). Otherwise
 *   the index is copied byte for byte, so the target's digest is the source's.
 */
import type { Readable } from "node:stream";
import { mapBounded } from "../boundedConcurrency.js";
import { CancelledError, KilnError, LeaseLostError, PromotionFailedError, PromotionSourceMissingError } from "../errors.js";
import { emit } from "../events.js";
import type { RegistryRequestOptions } from "../registry/abort.js";
import { openBlobStream, uploadBlob, type UploadedBlob } from "../registry/blobs.js";
import { describeRef, toReference, type FetchedManifest, type RegistryClient, type RegistryReference } from "../registry/client.js";
import { putImageManifests, type ManifestToPut } from "../registry/manifestsWrite.js";
import { isIndexMediaType } from "../registry/mediaTypes.js";
import { childDigestsByPlatform, missingPlatforms, normalizePlatform } from "../registry/platforms.js";

export interface PromoteImageOptions extends RegistryRequestOptions {
  /** Platforms that must be copied (`linux/amd64`, …); empty or unset: whatever the source has. */
  platforms?: readonly string[];
  /** Called right before the target's tag is written (a lease check); nothing is tagged when it rejects. */
  beforeTag?: () => Promise<void>;
  /** Blobs copied at once (default 4). */
  concurrency?: number;
  /** Bytes per upload chunk when streaming (default 16 MiB). */
  chunkBytes?: number;
  /** The `image` field of the progress events (default: the target reference). */
  image?: string;
}

export interface PromotedImage {
  source: string;
  target: string;
  /** The digest the target's tag names. */
  digest: string;
  mediaType: string;
  /** "mount" when source and target share a registry host, else "stream". */
  mode: "mount" | "stream";
  blobs: { mounted: number; copied: number; existing: number };
  /** Bytes streamed from the source to the target (0 when everything was mounted or present). */
  bytesCopied: number;
  /** Manifests written (children and the tagged one). */
  manifests: number;
  /** The index was rewritten without children the source no longer holds (none of them requested). */
  reducedIndex: boolean;
}

interface Descriptor {
  mediaType?: string;
  digest?: string;
  size?: number;
  urls?: string[];
  platform?: { os?: string; architecture?: string; variant?: string };
}

interface BlobToCopy {
  digest: string;
  size?: number;
}

const DEFAULT_CONCURRENCY = 4;

/** Copies `source` to `target` (both full references; the target needs a tag). See the module comment. */
export async function promoteImage(
  client: RegistryClient,
  source: string | RegistryReference,
  target: string | RegistryReference,
  options: PromoteImageOptions = {},
): Promise<PromotedImage> {
  const from = toReference(source);
  const to = toReference(target);
  const label = options.image ?? describeRef(to);
  if (!to.tag)
    throw new PromotionFailedError(`Cannot promote to ${describeRef(to)}: the target has no tag`, {
      hint: "Give the target reference a tag.",
      details: { target: describeRef(to) },
    });
  const request: RegistryRequestOptions = { signal: options.signal, onEvent: options.onEvent };
  const requested = [...new Set((options.platforms ?? []).map((p) => normalizePlatform(p)))];
  const missing = (what: string): PromotionSourceMissingError =>
    new PromotionSourceMissingError(`Cannot promote ${describeRef(from)}: ${what}`, {
      hint: "Promote from a registry that holds the image for every platform you need, or build it.",
      details: { source: describeRef(from), platforms: requested },
    });

  try {
    const top = await client.getManifest(from, request);
    if (!top) throw missing("the source registry does not hold it");
    const isIndex = isIndexMediaType(top.mediaType) || Array.isArray(top.manifest.manifests);
    const children: FetchedManifest[] = [];
    let tagged: ManifestToPut = { body: top.body, mediaType: mediaTypeOf(top) };
    let reducedIndex = false;

    if (isIndex) {
      const entries = (top.manifest.manifests ?? []) as Descriptor[];
      const required = new Set([...childDigestsByPlatform(top.manifest, requested).values()].flat());
      const notListed = missingPlatforms(requested, [...childDigestsByPlatform(top.manifest, requested).keys()]);
      if (notListed.length > 0) throw missing(`its index does not list ${notListed.join(", ")}`);
      const kept: Descriptor[] = [];
      for (const entry of entries) {
        if (typeof entry.digest !== "string") continue;
        if (isIndexMediaType(entry.mediaType)) {
          throw new PromotionFailedError(`Cannot promote ${describeRef(from)}: it nests an index (${entry.digest}), which Kiln does not copy`, {
            hint: "Copy this image with a registry tool (crane copy, skopeo copy), or build it.",
            details: { source: describeRef(from), digest: entry.digest },
          });
        }
        const child = await client.getManifest({ registry: from.registry, repository: from.repository, digest: entry.digest }, request);
        if (!child) {
          if (required.has(entry.digest))
            throw missing(`the registry no longer holds its ${entry.platform ? normalizePlatform(entry.platform) : ""} manifest ${entry.digest}`);
          reducedIndex = true;
          continue;
        }
        children.push(child);
        kept.push(entry);
      }
      if (reducedIndex) tagged = { body: Buffer.from(JSON.stringify({ ...top.manifest, manifests: kept })), mediaType: tagged.mediaType };
    } else if (requested.length > 0) {
      const provided = await client.platformsOfManifest({ registry: from.registry, repository: from.repository, digest: top.digest }, top, request);
      const lacking = missingPlatforms(requested, provided);
      if (lacking.length > 0) throw missing(`it is a single-platform image for ${provided.join(", ") || "an unknown platform"}, not ${lacking.join(", ")}`);
    }

    const mode: PromotedImage["mode"] = from.registry === to.registry ? "mount" : "stream";
    const blobs = uniqueBlobs([...(isIndex ? children : [top])]);
    const counts = { mounted: 0, copied: 0, existing: 0 };
    let bytesCopied = 0;
    // The first failure starts no further copy; those under way end first (boundedConcurrency.ts).
    // Each copy listens on a signal of its own, so the caller's carries one listener, not one per request.
    await mapBounded(
      blobs,
      Math.max(1, options.concurrency ?? DEFAULT_CONCURRENCY),
      async (blob, _index, signal) => {
        const copied = await copyBlob(client, from, to, blob, mode, { ...options, signal }, label);
        if (copied.via === "mounted") counts.mounted++;
        else if (copied.via === "existing") counts.existing++;
        else {
          counts.copied++;
          bytesCopied += copied.size;
        }
      },
      { signal: options.signal },
    );

    const childManifests = children.map((child) => ({ body: child.body, mediaType: mediaTypeOf(child) }));
    const digest = await putImageManifests(client, { ...to, digest: undefined }, childManifests, tagged, { ...request, beforeTag: options.beforeTag });
    return {
      source: describeRef(from),
      target: describeRef(to),
      digest,
      mediaType: tagged.mediaType,
      mode,
      blobs: counts,
      bytesCopied,
      manifests: childManifests.length + 1,
      reducedIndex,
    };
  } catch (error) {
    if (options.signal?.aborted)
      throw CancelledError.isInstance(error) ? error : new CancelledError(`Promotion of ${describeRef(from)} cancelled`, { cause: error });
    if (PromotionFailedError.isInstance(error) || PromotionSourceMissingError.isInstance(error) || LeaseLostError.isInstance(error)) throw error;
    const message = KilnError.isInstance(error) || error instanceof Error ? error.message : String(error);
    throw new PromotionFailedError(`Promoting ${describeRef(from)} to ${describeRef(to)} failed: ${message}`, {
      hint: KilnError.isInstance(error) && error.hint ? error.hint : "Check both registries are reachable and your credentials for them, then try again.",
      cause: error,
      details: { source: describeRef(from), target: describeRef(to), ...(KilnError.isInstance(error) ? { code: error.code } : {}) },
    });
  }
}

/** Makes the target repository hold one blob: mounted (same host), skipped (already there) or streamed. */
async function copyBlob(
  client: RegistryClient,
  from: RegistryReference,
  to: RegistryReference,
  blob: BlobToCopy,
  mode: PromotedImage["mode"],
  options: PromoteImageOptions,
  label: string,
): Promise<UploadedBlob> {
  // The source stream's own failure (its digest check, a cut connection), kept to name it exactly.
  let sourceFailure: Error | undefined;
  const layer = blob.digest.replace(/^sha256:/, "").slice(0, 12);
  try {
    const uploaded = await uploadBlob(
      client,
      { ...to, tag: undefined, digest: undefined },
      {
        digest: blob.digest,
        ...(blob.size !== undefined ? { size: blob.size } : {}),
        open: async (): Promise<Readable> => {
          sourceFailure = undefined;
          const stream = await openBlobStream(client, { ...from, tag: undefined }, blob.digest, { signal: options.signal, onEvent: options.onEvent });
          stream.on("error", (error) => (sourceFailure = error));
          return stream;
        },
      },
      {
        mountFrom: mode === "mount" ? [from.repository] : [],
        signal: options.signal,
        onEvent: options.onEvent,
        ...(options.chunkBytes !== undefined ? { chunkBytes: options.chunkBytes } : {}),
        onProgress: (sent) =>
          emit(options.onEvent, {
            type: "push.progress",
            image: label,
            layer,
            status: "copying",
            current: sent,
            ...(blob.size !== undefined ? { total: blob.size } : {}),
          }),
      },
    );
    emit(options.onEvent, {
      type: "push.progress",
      image: label,
      layer,
      status: uploaded.via === "mounted" ? "mounted" : uploaded.via === "existing" ? "exists" : "copied",
      ...(blob.size !== undefined ? { current: blob.size, total: blob.size } : {}),
    });
    return uploaded;
  } catch (error) {
    if (options.signal?.aborted) throw error;
    // registry/blobs.ts: the streamed read's check ("arrived with digest …") or the upload's own ("the blob's source gave digest …").
    const failure = sourceFailure ?? (error instanceof Error ? error : undefined);
    if (failure && /arrived with digest|source gave digest|truncated/.test(failure.message)) {
      throw new PromotionFailedError(`Promoting ${describeRef(from)}: blob ${blob.digest} did not arrive intact (${failure.message})`, {
        hint: "The source registry serves damaged bytes for this blob: nothing was tagged at the target. Repair or re-push the image in the source, or build it.",
        cause: error,
        details: {
          reason: /truncated/.test(failure.message) ? "truncated" : "digest-mismatch",
          source: describeRef(from),
          target: describeRef(to),
          digest: blob.digest,
        },
      });
    }
    throw error;
  }
}

/** Config and layers of each manifest, once each (foreign layers with `urls` are not in the registry: skipped). */
function uniqueBlobs(manifests: readonly FetchedManifest[]): BlobToCopy[] {
  const seen = new Map<string, BlobToCopy>();
  for (const { manifest } of manifests) {
    const descriptors = [manifest.config, ...(Array.isArray(manifest.layers) ? manifest.layers : [])] as (Descriptor | undefined)[];
    for (const descriptor of descriptors) {
      if (!descriptor || typeof descriptor.digest !== "string" || (Array.isArray(descriptor.urls) && descriptor.urls.length > 0)) continue;
      if (!seen.has(descriptor.digest))
        seen.set(descriptor.digest, { digest: descriptor.digest, ...(typeof descriptor.size === "number" ? { size: descriptor.size } : {}) });
    }
  }
  return [...seen.values()];
}

function mediaTypeOf(fetched: FetchedManifest): string {
  const own = fetched.manifest.mediaType;
  return (
    fetched.mediaType ??
    (typeof own === "string"
      ? own
      : Array.isArray(fetched.manifest.manifests)
        ? "application/vnd.oci.image.index.v1+json"
        : "application/vnd.oci.image.manifest.v1+json")
  );
}
