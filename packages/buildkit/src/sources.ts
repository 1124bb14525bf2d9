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
import {
  filesFor,
  openPath,
  pinnedDigest,
  renderDockerfile,
  snapshotOf,
  snapshotSpec,
  SourceChangedError,
  sourceChanged,
  type Image,
  type SourceSnapshot,
  type WalkEntry,
} from "@kiln/core";
import { SourceTree, type SourceEntry } from "@kiln/docker/internal";

export const CONTEXT_SOURCE = "context";
export const DOCKERFILE_SOURCE = "dockerfile";
export const DOCKERFILE_NAME = "Dockerfile";

export interface BuildSources {
  context: SourceTree;
  dockerfile: SourceTree;
  /** The Dockerfile text sent (for messages and tests). */
  dockerfileText: string;
  /** Keys the daemon's cache of these sources: stable for the same image name and source folders. */
  sharedKey: string;
}

function mtimeNs(entry: WalkEntry): bigint {
  // Microsecond precision is what a double of milliseconds holds exactly.
  return BigInt(Math.trunc(entry.mtimeMs * 1000)) * 1000n;
}

/** The file's real second, with nanoseconds taken from its content digest (see the module comment). */
export function contentExactModTime(entry: Pick<WalkEntry, "mtimeMs">, digest: Buffer): bigint {
  return BigInt(Math.floor(entry.mtimeMs / 1000)) * 1_000_000_000n + BigInt(digest.readUInt32BE(0) % 1_000_000_000);
}

function toSourceEntry(entry: WalkEntry, snapshot: SourceSnapshot): SourceEntry {
  if (entry.type === "dir") return { path: entry.contextPath, type: "dir", mode: 0o755, size: 0, modTimeNs: 0n };
  if (entry.type === "symlink") return { path: entry.contextPath, type: "symlink", mode: 0o777, size: 0, modTimeNs: mtimeNs(entry), linkTarget: entry.linkTarget ?? "" };
  const digest = pinnedDigest(snapshot, entry);
  return {
    path: entry.contextPath,
    type: "file",
    mode: entry.executable ? 0o755 : 0o644,
    size: entry.size,
    modTimeNs: contentExactModTime(entry, digest),
    hostPath: entry.hostPath,
    listed: { entry, digest },
  };
}

/** A modTime that changes whenever `content` does (rendered files have no mtime of their own). */
export function contentModTime(content: Buffer): bigint {
  return createHash("sha256").update(content).digest().readBigUInt64BE(0) >> 2n;
}

/**
 * The snapshot a build of `image` sends: the one the engine pinned for it, else — a builder called
 * directly — one taken now, which must give the content tag being built (`uri`'s) unless the tag is explicit.
 */
export function sourcesSnapshot(image: Image, uri: string = image.uri): SourceSnapshot {
  const pinned = snapshotOf(image);
  if (pinned !== undefined) return pinned;
  const { tag, snapshot } = snapshotSpec(image);
  if (image.spec.tag === undefined && !uri.endsWith(`:${tag}`)) {
    throw new SourceChangedError(`The sources of ${uri} changed between computing its content tag and building it (the files now give tag ${tag})`, {
      hint: "Nothing was built. Stop whatever is writing to the source tree, then run the build again: it lists and hashes the sources anew.",
      details: { image: uri, tagNow: tag },
    });
  }
  return snapshot;
}

export function buildSources(image: Image, uri: string = image.uri): BuildSources {
  const snapshot = sourcesSnapshot(image, uri);
  const listing = filesFor(image, snapshot);
  const context = new SourceTree(listing.groups.flatMap((group) => group.entries.map((entry) => toSourceEntry(entry, snapshot))));
  if (listing.dockerfile) assertDockerfileUnchanged(listing.dockerfile, snapshot);
  const dockerfileText = renderDockerfile(image, { buildkit: true });
  const body = Buffer.from(dockerfileText, "utf8");
  const dockerfile = new SourceTree([{ path: DOCKERFILE_NAME, type: "file", mode: 0o644, size: body.length, modTimeNs: contentModTime(body), content: body }]);
  const roots = listing.groups.map((g) => g.entries[0]?.hostPath.slice(0, g.entries[0].hostPath.length - g.entries[0].path.length) ?? "");
  const sharedKey = createHash("sha256").update(JSON.stringify(["kiln-buildkit-sources-v1", image.name, roots])).digest("hex").slice(0, 32);
  return { context, dockerfile, dockerfileText, sharedKey };
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
