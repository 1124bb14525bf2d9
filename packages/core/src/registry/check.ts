/**
 * `checkImage`: the one question `kiln check` and the registry checkers ask — is this reference
 * present for every requested platform? HEAD first (cheap, and not a pull on Docker Hub); the
 * manifest is read (GET) only when platforms must be compared. For an index, each requested
 * platform's child manifest must still be held by the registry (HEAD by digest): an index whose
 * arm64 child was deleted is absent for arm64. "Could not tell" is a thrown typed error, never
 * `present: false`.
 */
import type { EventListener } from "../events.js";
import { normalizePlatform, missingPlatforms } from "./platforms.js";
import { describeRef, RegistryClient, toReference, type RegistryReference } from "./client.js";
import { platformsWithMissingChildren } from "./indexChildren.js";
import { isIndexMediaType } from "./mediaTypes.js";
import { isOciLayoutTarget } from "../reference.js";

export interface CheckImageOptions {
  /** Platforms the image must provide (`linux/amd64`, `linux/arm64`, …). Empty or omitted: any. */
  platforms?: readonly string[];
  /** A client to reuse (its token cache and keep-alive connections); default: a shared one. */
  client?: RegistryClient;
  /**
   * Cancels the check: the in-flight request is aborted (socket closed), no retry or back-off
   * follows, and the call rejects with a CancelledError — never an answer.
   */
  signal?: AbortSignal;
  /** Hears the check's waits: `registry.retry` and `registry.ratelimit` events (see RegistryRequestOptions). */
  onEvent?: EventListener;
}

export interface CheckImageResult {
  /** True only when the manifest exists and provides every requested platform. */
  present: boolean;
  /** The reference checked, normalised (`docker.io/library/busybox:1.36`). */
  uri: string;
  /** Manifest (or index) digest when the reference exists. */
  digest?: string;
  /** True when the reference exists at all (possibly without some requested platform). */
  exists: boolean;
  /** Platforms the image provides (read only when platforms were requested; a requested one whose manifest is gone is left out). */
  platforms: string[];
  /** Requested platforms the image lacks (all of them when it does not exist). */
  missing: string[];
  /**
   * Requested platforms the index lists but whose manifest the registry does not hold (deleted, or
   * never pushed). They are part of `missing`: a build rebuilds them.
   */
  brokenPlatforms: string[];
}

let sharedClient: RegistryClient | undefined;

/** The process-wide client used when none is given (tokens and connections survive between checks). */
export function defaultRegistryClient(): RegistryClient {
  sharedClient ??= new RegistryClient();
  return sharedClient;
}

export async function checkImage(reference: string | RegistryReference, options: CheckImageOptions = {}): Promise<CheckImageResult> {
  // An `oci:<dir>` target is a layout directory on this machine: no registry holds it.
  if (typeof reference === "string" && isOciLayoutTarget(reference)) {
    const requested = [...new Set((options.platforms ?? []).map((p) => normalizePlatform(p)))];
    return { present: false, exists: false, uri: reference, platforms: [], missing: requested, brokenPlatforms: [] };
  }
  const ref = toReference(reference);
  const client = options.client ?? defaultRegistryClient();
  const requested = [...new Set((options.platforms ?? []).map((p) => normalizePlatform(p)))];
  const uri = describeRef(ref);

  const request = { signal: options.signal, onEvent: options.onEvent };
  const head = await client.headManifest(ref, request);
  if (!head) return { present: false, exists: false, uri, platforms: [], missing: requested, brokenPlatforms: [] };
  if (requested.length === 0) return { present: true, exists: true, uri, digest: head.digest, platforms: [], missing: [], brokenPlatforms: [] };

  // Read the very manifest the HEAD saw (by digest), so a tag moving in between cannot mix answers.
  const byDigest = { registry: ref.registry, repository: ref.repository, digest: head.digest };
  const fetched = await client.getManifest(byDigest, request);
  if (!fetched) return { present: false, exists: false, uri, platforms: [], missing: requested, brokenPlatforms: [] };
  const listed = await client.platformsOfManifest(byDigest, fetched, request);
  const isIndex = isIndexMediaType(fetched.mediaType) || Array.isArray(fetched.manifest.manifests);
  // Only the requested platforms the index lists are asked about: one child HEAD each.
  const broken = isIndex
    ? await platformsWithMissingChildren(
        client,
        ref,
        fetched.manifest,
        requested.filter((p) => missingPlatforms([p], listed).length === 0),
        request,
      )
    : [];
  const platforms = listed.filter((p) => !broken.includes(p));
  const missing = missingPlatforms(requested, platforms);
  return { present: missing.length === 0, exists: true, uri, digest: head.digest, platforms, missing, brokenPlatforms: broken };
}
