/**
 * The two local sources a dockerfile.v0 Solve reads through the session, laid out as
 * `docker buildx build` sends them:
 * - `context`: exactly the files of the build's source snapshot (core's snapshot.ts: the listing the
 *   content tag hashed, with each file's sha256, pinned by the engine for this build): a
 *   `fromDockerfile` context at the root, each copying layer's files under `kiln-layers/<i>/`. No
 *   Dockerfile is added to it — a `COPY .` sees only the user's own files. Each file is sent from that
 *   listing and checked against its pinned digest before its last bytes go (@kiln/docker session/filesync.ts): the bytes
 *   sent are the bytes hashed, or the build fails with SourceChangedError.
 * - `dockerfile`: one file, `Dockerfile` — core's `renderDockerfile` (a `fromDockerfile` image
 *   without layers: the user's Dockerfile as written, checked against its pinned digest).
 *
 * The daemon keeps what it received (by the session's shared key) and on the next build requests only
 * the files whose stat differs. So that the comparison is content-exact, a file's modTime keeps its
 * real second but takes its nanoseconds from the file's pinned digest: a file rewritten with the same
 * size and second (a restored cache, an extracted archive) is still sent again.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Image } from "@kiln/core";
import { filesFor, openPath, pinnedDigest, renderDockerfile, sourceChanged, type SourceSnapshot, type WalkEntry } from "@kiln/core/plugin";
import { SESSION_DOCKERFILE_NAME, contextTree, dockerfileTree, rootOf, sourcesOf, type SourceTree } from "@kiln/docker/internal";

// The layout, the entries and the snapshot rule are @kiln/docker's (session/contextSources.ts, buildOne.ts): one implementation for both builders.
export { CONTEXT_SOURCE, DOCKERFILE_SOURCE, contentExactModTime, contentModTime } from "@kiln/docker/internal";
export const DOCKERFILE_NAME = SESSION_DOCKERFILE_NAME;

export interface BuildSources {
  context: SourceTree;
  dockerfile: SourceTree;
  /** The Dockerfile text sent (for messages and tests). */
  dockerfileText: string;
  /** Keys the daemon's cache of these sources: stable for the same image name and source folders. */
  sharedKey: string;
}

/**
 * The snapshot a build of `image` sends: the one the engine pinned for it, else — a builder called
 * directly — one taken now, which must give the content tag being built (`uri`'s) unless the tag is explicit.
 */
export function sourcesSnapshot(image: Image, uri: string = image.uri): SourceSnapshot {
  return sourcesOf(image, uri);
}

export function buildSources(image: Image, uri: string = image.uri): BuildSources {
  const snapshot = sourcesSnapshot(image, uri);
  const listing = filesFor(image, snapshot);
  if (listing.dockerfile) assertDockerfileUnchanged(listing.dockerfile, snapshot);
  const dockerfileText = renderDockerfile(image, { buildkit: true });
  const roots = listing.groups.map((g) => rootOf(g.entries[0]));
  const sharedKey = createHash("sha256")
    .update(JSON.stringify(["kiln-buildkit-sources-v1", image.name, roots]))
    .digest("hex")
    .slice(0, 32);
  return { context: contextTree(listing, snapshot), dockerfile: dockerfileTree(dockerfileText), dockerfileText, sharedKey };
}

/** A `fromDockerfile` image's Dockerfile is rendered from the file: it must still be the one hashed. */
function assertDockerfileUnchanged(entry: WalkEntry, snapshot: SourceSnapshot): void {
  let body: Buffer;
  try {
    body = readFileSync(openPath(entry));
  } catch (error) {
    throw sourceChanged(entry, `it cannot be read any more (${(error as NodeJS.ErrnoException).code ?? "error"})`, "while rendering the Dockerfile", error);
  }
  if (!createHash("sha256").update(body).digest().equals(pinnedDigest(snapshot, entry))) {
    throw sourceChanged(entry, "its content is not the one hashed for the content tag", "while rendering the Dockerfile");
  }
}
