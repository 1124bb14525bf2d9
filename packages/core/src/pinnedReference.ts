/**
 * How a base (or uv image) pinned by pinBase is named: `ref@digest` — what a Dockerfile's FROM (and
 * `COPY --from`) and a daemonless builder read. Kept apart from the digest lookup (baseDigest.ts) so rendering never loads the
 * registry client.
 */
import type { BaseSpec, ImageSpec } from "./layers.js";
import { parseReference } from "./reference.js";

/** True when the reference already names a digest (`name@sha256:…`): it is pinned as written. */
export function referenceHasDigest(ref: string): boolean {
  return parseReference(ref).digest !== undefined;
}

/** What a Dockerfile's FROM (and a daemonless builder) reads for this base: `ref@digest` when pinned. */
export function baseReference(base: Readonly<Extract<BaseSpec, { kind: "image" }>>): string {
  return base.digest !== undefined && !referenceHasDigest(base.ref) ? `${base.ref}@${base.digest}` : base.ref;
}

/** What `COPY --from=` reads uv from: `uvImage@digest` when pinBase pinned it, else `uvImage` as written. */
export function uvImageReference(spec: Readonly<Pick<ImageSpec, "uvImage" | "uvDigest">>): string {
  return spec.uvDigest !== undefined && !referenceHasDigest(spec.uvImage) ? `${spec.uvImage}@${spec.uvDigest}` : spec.uvImage;
}
