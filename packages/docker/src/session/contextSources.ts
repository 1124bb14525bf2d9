/**
 * A build's context and Dockerfile as the two local sources `docker build` (BuildKit) serves through
 * its session, with `remote=client-session` on `POST /build` (docker/cli build_buildkit.go; moby
 * builder-next takes the context from the session instead of the request body):
 * - `context`: exactly the files of the build's source snapshot (core's snapshot.ts: the listing the
 *   content tag hashed, each file with its pinned sha256), laid out as in core's tar context — and
 *   nothing Kiln adds: no hidden `.dockerfile.kiln`, no rewritten `.dockerignore`. The daemon reads
 *   the context's own `.dockerignore` from it and applies it itself. Each file is opened and checked
 *   against its pinned digest before its last bytes go (filesync.ts), as core's tar does.
 * - `dockerfile`: one file, `Dockerfile`: the rendered Dockerfile, first checked to be the rendering
 *   of the Dockerfile that was hashed (core's assertDockerfileAsHashed).
 *
 * The daemon keeps what it received under the session's shared key and, on the next build with that
 * key, requests only the files whose stat differs. So that this comparison is content-exact, a
 * file's modTime keeps its real second but takes its nanoseconds from its pinned digest.
 */
import { createHash } from "node:crypto";
import type { ImageSpec } from "@kiln/core";
import { assertDockerfileAsHashed, filesFor, pinnedDigest, type SourceSnapshot, type WalkEntry } from "@kiln/core/plugin";
import { SourceTree, type SourceEntry } from "./filesync.js";

export const CONTEXT_SOURCE = "context";
export const DOCKERFILE_SOURCE = "dockerfile";
/** The Dockerfile's name inside the `dockerfile` source (the build's `dockerfile` parameter). */
export const SESSION_DOCKERFILE_NAME = "Dockerfile";

export interface ContextSource {
  /** The spec the context is made of (a stage's: other layers blanked). */
  spec: Readonly<ImageSpec>;
  /** The rendered Dockerfile the build uses. */
  dockerfile: string;
  snapshot: SourceSnapshot;
}

export interface SessionContext {
  /** By local source name: `context` and `dockerfile`. */
  trees: ReadonlyMap<string, SourceTree>;
  /** Keys the daemon's copy of these sources: the same source folders give the same key (as the docker CLI keys it by directory). */
  sharedKey: string;
}

export async function sessionContext({ spec, dockerfile, snapshot }: ContextSource): Promise<SessionContext> {
  await assertDockerfileAsHashed(spec, dockerfile, snapshot);
  const listing = filesFor(spec, snapshot);
  const roots = listing.groups.map((group) => [group.contextDir, rootOf(group.entries[0])]);
  const sharedKey = createHash("sha256")
    .update(JSON.stringify(["kiln-docker-context-v1", roots]))
    .digest("hex")
    .slice(0, 32);
  return {
    trees: new Map([
      [CONTEXT_SOURCE, contextTree(listing, snapshot)],
      [DOCKERFILE_SOURCE, dockerfileTree(dockerfile)],
    ]),
    sharedKey,
  };
}

/** The `context` source: every listed file, dir and symlink, each file with its pinned digest. Shared with @kiln/buildkit. */
export function contextTree(listing: ReturnType<typeof filesFor>, snapshot: SourceSnapshot): SourceTree {
  return new SourceTree(listing.groups.flatMap((group) => group.entries.map((entry) => sourceEntry(entry, snapshot))));
}

/** The `dockerfile` source: one file, `Dockerfile`, with a modTime that changes whenever its text does. Shared with @kiln/buildkit. */
export function dockerfileTree(dockerfile: string): SourceTree {
  const body = Buffer.from(dockerfile, "utf8");
  return new SourceTree([{ path: SESSION_DOCKERFILE_NAME, type: "file", mode: 0o644, size: body.length, modTimeNs: contentModTime(body), content: body }]);
}

/** The host folder a group's entries are listed from. */
export function rootOf(entry: WalkEntry | undefined): string {
  return entry ? entry.hostPath.slice(0, entry.hostPath.length - entry.path.length) : "";
}

function sourceEntry(entry: WalkEntry, snapshot: SourceSnapshot): SourceEntry {
  if (entry.type === "dir") return { path: entry.contextPath, type: "dir", mode: 0o755, size: 0, modTimeNs: 0n };
  if (entry.type === "symlink") {
    return {
      path: entry.contextPath,
      type: "symlink",
      mode: 0o777,
      size: 0,
      modTimeNs: BigInt(Math.trunc(entry.mtimeMs * 1000)) * 1000n,
      linkTarget: entry.linkTarget ?? "",
    };
  }
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

/** The file's real second, with nanoseconds from its content digest: a same-size rewrite within the second is still sent again. */
export function contentExactModTime(entry: Pick<WalkEntry, "mtimeMs">, digest: Buffer): bigint {
  return BigInt(Math.floor(entry.mtimeMs / 1000)) * 1_000_000_000n + BigInt(digest.readUInt32BE(0) % 1_000_000_000);
}

/** A modTime that changes whenever `content` does (a rendered file has no mtime of its own). */
export function contentModTime(content: Buffer): bigint {
  return createHash("sha256").update(content).digest().readBigUInt64BE(0) >> 2n;
}
