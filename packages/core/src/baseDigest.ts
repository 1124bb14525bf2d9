/**
 * A base image reference resolved to the digest its registry serves for it now: one manifest HEAD
 * per reference, shared by every image of the run (concurrent lookups share one request), and kept
 * for BASE_DIGEST_TTL_MS so a long-lived process still notices a tag that moved later.
 *
 * The digest is the one the tag names: for a multi-platform base the index (manifest list) digest —
 * the HEAD accepts index media types, so the registry does not pick a platform's manifest — which is
 * what `FROM ref@digest` and a daemonless builder then read, for every platform.
 *
 * "Could not tell" is never "unpinned": an unreachable registry, refused credentials, a timeout or a
 * reference the registry does not hold is a BaseDigestError naming the base and its registry.
 *
 * The uv image (`COPY --from=<uvImage>`) is pinned through the same lookup (resolveUvImageDigest).
 */
import { InFlight } from "./dedupe.js";
import { BaseDigestError, KilnError } from "./errors.js";
import type { EventListener } from "./events.js";
import { parseReference } from "./reference.js";
import { defaultRegistryClient } from "./registry/check.js";
import type { RegistryClient } from "./registry/client.js";

/** How long a resolved digest is reused within one process (a CLI run is far shorter). */
export const BASE_DIGEST_TTL_MS = 5 * 60_000;

export interface ResolveBaseDigestOptions {
  /** The client to ask (default: the process-wide one, with the usual credentials). */
  client?: RegistryClient;
  signal?: AbortSignal;
  onEvent?: EventListener;
}

interface Cached {
  at: number;
  digest: string;
}

const cache = new Map<string, Cached>();
/** Lookups under way: each caller's signal cancels its own wait only, never the others' (dedupe.ts). */
const lookups = new InFlight<string>();

/** Forgets every resolved digest (tests; or a process that wants the next build to look again). */
export function clearBaseDigestCache(): void {
  cache.clear();
}

export { baseReference, referenceHasDigest } from "./pinnedReference.js";

/** Which image of a Dockerfile is being pinned: what its BaseDigestError names and how it says to fix it. */
type Role = "base" | "uv";

/** The digest `ref` names in its registry now (cached for the run; see the module comment). */
export function resolveBaseDigest(ref: string, options: ResolveBaseDigestOptions = {}): Promise<string> {
  return resolveDigest(ref, "base", options);
}

/**
 * The digest the uv image (`uvImage`, which `COPY --from` reads uv from) names now: the same lookup
 * and cache as a base's, with errors that name the uv image and the options that replace it.
 */
export function resolveUvImageDigest(ref: string, options: ResolveBaseDigestOptions = {}): Promise<string> {
  return resolveDigest(ref, "uv", options);
}

function resolveDigest(ref: string, role: Role, options: ResolveBaseDigestOptions): Promise<string> {
  const parsed = parseReference(ref);
  if (parsed.digest !== undefined) return Promise.resolve(parsed.digest);
  const key = `${parsed.registry}/${parsed.repository}:${parsed.tag ?? "latest"}`;
  const known = cache.get(key);
  // A client of the caller's own (other credentials, endpoints) asks for itself.
  if (options.client !== undefined) return lookUp(ref, parsed.registry, role, options);
  if (known !== undefined && Date.now() - known.at < BASE_DIGEST_TTL_MS) return Promise.resolve(known.digest);
  // A failure is not remembered: the next build asks again. The role is in the key only so each
  // caller's error names the image as it uses it (a reference is rarely both base and uv image).
  return lookups.run(
    `${role} ${key}`,
    async (signal, emit) => {
      const digest = await lookUp(ref, parsed.registry, role, { signal, onEvent: emit });
      cache.set(key, { at: Date.now(), digest });
      return digest;
    },
    { signal: options.signal, onEvent: options.onEvent },
  );
}

/** How to get past a registry that cannot tell: for the uv image, a reachable copy or pip instead of uv. */
const UV_ALTERNATIVES =
  'point `uvImage` at a copy in a registry you can reach (fromDebianBase({ uvImage }) or clone({ uvImage })), install with pip instead (installer: "pip"; withUvProject always needs uv)';

async function lookUp(ref: string, registry: string, role: Role, options: ResolveBaseDigestOptions): Promise<string> {
  const client = options.client ?? defaultRegistryClient();
  let head;
  try {
    head = await client.headManifest(ref, { signal: options.signal, onEvent: options.onEvent });
  } catch (error) {
    if (options.signal?.aborted) throw error;
    const reason = KilnError.isInstance(error) ? error.message : ((error as Error)?.message ?? String(error));
    const cause = KilnError.isInstance(error) ? { cause: error.code } : {};
    if (role === "uv") {
      throw new BaseDigestError(`pinBase: cannot resolve the uv image ${ref} to a digest: ${reason}`, {
        cause: error,
        hint: `pinBase pins the uv image too, so it needs its registry (${registry}) when the tag is computed: check the network and credentials (docker login ${registry}), ${UV_ALTERNATIVES}, or turn pinning off for this image (pinBase: false) or globally (KILN_PIN_BASE=0).`,
        details: { uvImage: ref, registry, ...cause },
      });
    }
    throw new BaseDigestError(`pinBase: cannot resolve the base image ${ref} to a digest: ${reason}`, {
      cause: error,
      hint: `pinBase needs the base's registry (${registry}) when the tag is computed: check the network and credentials (docker login ${registry}), or turn pinning off for this image (pinBase: false) or globally (KILN_PIN_BASE=0).`,
      details: { base: ref, registry, ...cause },
    });
  }
  if (head === null) {
    if (role === "uv") {
      throw new BaseDigestError(`pinBase: the uv image ${ref} is not in its registry ${registry}`, {
        hint: `Check the uvImage reference (or push that image first), ${UV_ALTERNATIVES}, or set pinBase: false for this image.`,
        details: { uvImage: ref, registry },
      });
    }
    throw new BaseDigestError(`pinBase: the base image ${ref} is not in its registry ${registry}`, {
      hint: "Check the base reference (or push the base image first); a base that exists only in a local daemon cannot be pinned: set pinBase: false for this image.",
      details: { base: ref, registry },
    });
  }
  return head.digest;
}
