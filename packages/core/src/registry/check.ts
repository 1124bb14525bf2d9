/**
 * `checkImage`: the one question `kiln check` and the registry checkers ask — is this reference
 * present for every requested platform? HEAD first (cheap, and not a pull on Docker Hub); the
 * manifest is read (GET) only when platforms must be compared. "Could not tell" is a thrown typed
 * error, never `present: false`.
 */
import { normalizePlatform, missingPlatforms } from "./platforms.js";
import { describeRef, RegistryClient, toReference, type RegistryReference } from "./client.js";

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
  /** Platforms the image provides (read only when platforms were requested). */
  platforms: string[];
  /** Requested platforms the image lacks (all of them when it does not exist). */
  missing: string[];
}

let sharedClient: RegistryClient | undefined;

/** The process-wide client used when none is given (tokens and connections survive between checks). */
export function defaultRegistryClient(): RegistryClient {
  sharedClient ??= new RegistryClient();
  return sharedClient;
}

export async function checkImage(reference: string | RegistryReference, options: CheckImageOptions = {}): Promise<CheckImageResult> {
  const ref = toReference(reference);
  const client = options.client ?? defaultRegistryClient();
  const requested = [...new Set((options.platforms ?? []).map((p) => normalizePlatform(p)))];
  const uri = describeRef(ref);

  const request = { signal: options.signal };
  const head = await client.headManifest(ref, request);
  if (!head) return { present: false, exists: false, uri, platforms: [], missing: requested };
  if (requested.length === 0) return { present: true, exists: true, uri, digest: head.digest, platforms: [], missing: [] };

  // Read the very manifest the HEAD saw (by digest), so a tag moving in between cannot mix answers.
  const byDigest = { registry: ref.registry, repository: ref.repository, digest: head.digest };
  const fetched = await client.getManifest(byDigest, request);
  if (!fetched) return { present: false, exists: false, uri, platforms: [], missing: requested };
  const platforms = await client.platformsOfManifest(byDigest, fetched, request);
  const missing = missingPlatforms(requested, platforms);
  return { present: missing.length === 0, exists: true, uri, digest: head.digest, platforms, missing };
}
