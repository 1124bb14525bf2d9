/**
 * The build context: a tar stream produced on the fly from the build's source snapshot (snapshot.ts:
 * the listing and per-file digests the content tag was computed from), reading each file as its turn
 * comes — no temp copy, no whole tree in memory, and the consumer's pace is respected (the tar is an
 * async generator behind `Readable.from`: nothing is read until the consumer asks for more).
 *
 * The bytes sent are the bytes hashed. Each file is opened once, without following links and without
 * blocking (listedFile.ts), must `fstat` as the listing saw it (regular file, device, inode, size),
 * and the sha256 of what is streamed must equal the digest that went into the tag. The last chunk of
 * every file is held back until that check passes, so a changed file never reaches the consumer as a
 * complete entry: the stream fails with SourceChangedError instead, and a daemon reading it has an
 * incomplete archive and builds nothing.
 *
 * Layout: a Kiln-built image gets `Dockerfile` at the root and each copying layer's files under
 * `kiln-layers/<i>/` (contextDirForLayer). A `fromDockerfile` image gets its context at the root,
 * filtered by its `.dockerignore` exactly as `docker build` would send it, and its Dockerfile the way
 * the docker CLI passes it: in place when it lies inside the context (and is not ignored); otherwise
 * as a hidden `.dockerfile.kiln` whose name is appended to the context's `.dockerignore`, so the
 * daemon drops it after reading it and a `COPY . /app` never picks it up. With layers added on top,
 * the rendered Dockerfile is `kiln-layers/Dockerfile` (also appended to `.dockerignore`) and the
 * added layers' files are under `kiln-layers/<i>/`.
 *
 * Headers are deterministic (tarHeader.ts): mtime 0, uid/gid 0, no user/group names, mode 0755 for
 * directories and executables, 0644 for other files, 0777 for symlinks.
 */
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { KilnError, SourceChangedError, ValidationError } from "./errors.js";
import { specOf, type ImageLike } from "./hash.js";
import type { ImageSpec } from "./layers.js";
import { assertListed, openFailure, openPath, OPEN_LISTED_FLAGS, sizeChanged, sourceChanged } from "./listedFile.js";
import { filesFor, pinnedDigest, snapshotOf, snapshotSpec, type SourceSnapshot } from "./snapshot.js";
import { snapshotTestHooks } from "./snapshotHooks.js";
import { encodeHeader, END_OF_ARCHIVE, padding, type TarHeader } from "./tarHeader.js";
import { listSpecFiles, type SpecFiles, type WalkEntry } from "./walk.js";

export { SourceChangedError };

export interface BuildContextOptions {
  /** The rendered Dockerfile text (dockerfile.ts's `renderDockerfile`). Default: rendered for the
   * classic builder (no BuildKit features), loaded lazily. */
  dockerfile?: string;
  /**
   * The sources to send (snapshot.ts). Default: the snapshot bound to `image` for its build (the
   * engine pins one per build), else a new one taken now. A spec derived from the snapshot's own (a
   * stage with other layers blanked) sends only the layers it still copies.
   */
  snapshot?: SourceSnapshot;
}

export interface BuildContext {
  /** The context as an uncompressed tar. */
  stream: Readable;
  /** Every path in the tar, in order (directories included, no trailing slash). */
  files: string[];
  /** Where the Dockerfile is inside the context (pass it as the build's `dockerfile`). */
  dockerfilePath: string;
}

const LAYERS_DIR = "kiln-layers";
/** Where a `fromDockerfile` image's Dockerfile goes when it cannot be used in place (the docker CLI uses a random `.dockerfile.<id>`). */
const HIDDEN_DOCKERFILE = ".dockerfile.kiln";
const CHUNK = 1 << 20;

/** Where the Dockerfile goes in the context of this spec. */
export function contextDockerfilePath(spec: Pick<ImageSpec, "base" | "layers">): string {
  return dockerfilePlacement(spec, listSpecFiles(spec as ImageSpec)).path;
}

interface DockerfilePlacement {
  path: string;
  /** False when the user's own file is already in the context at `path`. */
  add: boolean;
  /** Appended to the context's `.dockerignore` so the daemon removes the file after reading it. */
  ignore: boolean;
}

function dockerfilePlacement(spec: Pick<ImageSpec, "base" | "layers">, listing: SpecFiles): DockerfilePlacement {
  if (spec.base.kind !== "dockerfile") return { path: "Dockerfile", add: true, ignore: false };
  if (spec.layers.length > 0) return { path: `${LAYERS_DIR}/Dockerfile`, add: true, ignore: true };
  const own = listing.dockerfile?.contextPath;
  const inContext = listing.groups.some((g) => g.layerIndex === -1 && g.entries.some((e) => e.contextPath === own && e.type === "file"));
  return inContext && own ? { path: own, add: false, ignore: false } : { path: HIDDEN_DOCKERFILE, add: true, ignore: true };
}

type PlanItem =
  | { kind: "dir"; path: string }
  | { kind: "dockerfile"; path: string }
  | { kind: "dockerignore"; entry?: WalkEntry; append: string }
  | { kind: "entry"; entry: WalkEntry };

/** Lists the context now (so a missing source fails here) and returns a tar stream that reads lazily. */
export function createBuildContext(image: ImageLike, options: BuildContextOptions = {}): BuildContext {
  const spec = specOf(image);
  const snapshot = options.snapshot ?? snapshotOf(image) ?? snapshotSpec(spec).snapshot;
  const listing = filesFor(spec, snapshot);
  const placement = dockerfilePlacement(spec, listing);
  const dockerfilePath = placement.path;
  const plan: PlanItem[] = [];

  let dockerignoreAt = -1;
  for (const group of listing.groups.filter((g) => g.layerIndex === -1)) {
    for (const entry of group.entries) {
      if (entry.path === LAYERS_DIR || entry.path.startsWith(`${LAYERS_DIR}/`) || entry.path === HIDDEN_DOCKERFILE) {
        throw new ValidationError("Dockerfile context entry", entry.path, `the names ${LAYERS_DIR} and ${HIDDEN_DOCKERFILE} are reserved for Kiln`, {
          hint: `Rename it, or exclude it in the context's .dockerignore (\`${entry.path}\`).`,
        });
      }
      if (placement.ignore && entry.path === ".dockerignore" && entry.type === "file") {
        dockerignoreAt = plan.length;
        plan.push({ kind: "dockerignore", entry, append: dockerfilePath });
      } else plan.push({ kind: "entry", entry });
    }
  }
  if (placement.ignore && dockerignoreAt === -1) plan.unshift({ kind: "dockerignore", append: dockerfilePath });
  const layerGroups = listing.groups.filter((g) => g.layerIndex !== -1);
  if (dockerfilePath.startsWith(`${LAYERS_DIR}/`) || layerGroups.length > 0) plan.push({ kind: "dir", path: LAYERS_DIR });
  if (placement.add) plan.push({ kind: "dockerfile", path: dockerfilePath });
  for (const group of layerGroups) {
    plan.push({ kind: "dir", path: group.contextDir });
    for (const entry of group.entries) plan.push({ kind: "entry", entry });
  }

  const files = plan.map((item) => (item.kind === "entry" ? item.entry.contextPath : item.kind === "dockerignore" ? ".dockerignore" : item.path));
  for (const path of files) assertSafePath(path);

  const dockerfileText = options.dockerfile !== undefined ? Promise.resolve(options.dockerfile) : null;
  const tar = produce(plan, files, {
    spec,
    snapshot,
    dockerfile: () => dockerfileText ?? renderDefaultDockerfile(image),
    // A rendered Dockerfile that embeds the user's own must embed the one that was hashed.
    ownDockerfile: spec.base.kind === "dockerfile" ? listing.dockerfile : undefined,
  });
  return { stream: Readable.from(tar, { objectMode: false }), files, dockerfilePath };
}

async function renderDefaultDockerfile(image: ImageLike): Promise<string> {
  // Lazy: the renderer is only needed when the caller did not render the Dockerfile itself.
  const mod = (await import("./dockerfile.js")) as { renderDockerfile?: (image: unknown, options: { buildkit: boolean }) => string };
  if (typeof mod.renderDockerfile !== "function")
    throw new KilnError("renderDockerfile is not available", { hint: "Pass `dockerfile` to createBuildContext." });
  return mod.renderDockerfile(image, { buildkit: false });
}

/** Entries are built from directory listings joined with "/", so this is a guard, not a filter. */
function assertSafePath(path: string): void {
  if (path === "" || path.startsWith("/") || path.split("/").some((part) => part === ".." || part === "." || part === "")) {
    throw new KilnError(`Refusing to put ${JSON.stringify(path)} in the build context`, {
      hint: "This is a bug in Kiln: context paths must be relative and free of `..`.",
    });
  }
}

interface ProduceOptions {
  spec: ImageSpec;
  snapshot: SourceSnapshot;
  dockerfile: () => Promise<string>;
  ownDockerfile: WalkEntry | undefined;
}

/** The tar, entry by entry; each `yield` waits until the consumer wants more. */
async function* produce(plan: PlanItem[], paths: readonly string[], options: ProduceOptions): AsyncGenerator<Buffer> {
  await snapshotTestHooks()?.beforeStreaming?.(paths);
  for (const item of plan) {
    if (item.kind === "dir") {
      yield encodeHeader({ name: item.path, type: "directory", mode: 0o755 });
    } else if (item.kind === "dockerignore") {
      // The user's patterns, then the Dockerfile Kiln added (as the docker CLI does for its own).
      const own = item.entry ? (await readListedFile(item.entry, options.snapshot)).toString("utf8") : "";
      yield* small(
        { name: ".dockerignore", type: "file", mode: 0o644 },
        Buffer.from(`${own}${own === "" || own.endsWith("\n") ? "" : "\n"}${item.append}\n`, "utf8"),
      );
    } else if (item.kind === "dockerfile") {
      const text = await options.dockerfile();
      if (options.ownDockerfile !== undefined) await assertRendersHashedDockerfile(text, options.ownDockerfile, options.spec, options.snapshot);
      yield* small({ name: item.path, type: "file", mode: 0o644 }, Buffer.from(text, "utf8"));
    } else {
      const { entry } = item;
      if (entry.type === "dir") yield encodeHeader({ name: entry.contextPath, type: "directory", mode: 0o755 });
      else if (entry.type === "symlink") yield encodeHeader({ name: entry.contextPath, type: "symlink", mode: 0o777, linkname: entry.linkTarget ?? "" });
      else yield* streamFile(entry, options.snapshot);
    }
  }
  yield END_OF_ARCHIVE;
}

function* small(header: Omit<TarHeader, "size">, body: Buffer): Generator<Buffer> {
  yield encodeHeader({ ...header, size: body.length });
  yield body;
  yield padding(body.length);
}

const STREAMING = "while streaming the build context";

/**
 * One listed file: opened once (no link followed, never blocking), checked against the listing, and
 * streamed while its sha256 is computed; the last chunk goes out only once that digest equals the
 * one pinned for the tag (and the file has not grown).
 */
async function* streamFile(entry: WalkEntry, snapshot: SourceSnapshot): AsyncGenerator<Buffer> {
  const expected = pinnedDigest(snapshot, entry);
  const handle = await openListed(entry);
  try {
    assertListed(entry, await handle.stat(), STREAMING);
    yield encodeHeader({ name: entry.contextPath, type: "file", mode: entry.executable ? 0o755 : 0o644, size: entry.size });
    const hash = createHash("sha256");
    let held: Buffer | undefined;
    let read = 0;
    while (read < entry.size) {
      const buffer = Buffer.allocUnsafe(Math.min(CHUNK, entry.size - read));
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) throw sizeChanged(entry, read, STREAMING);
      read += bytesRead;
      const chunk = bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead);
      hash.update(chunk);
      if (held !== undefined) yield held;
      held = chunk;
    }
    const probe = await handle.read(Buffer.alloc(1), 0, 1, null);
    if (probe.bytesRead > 0) throw sourceChanged(entry, `it grew beyond the ${entry.size} bytes it had when listed`, STREAMING);
    const actual = hash.digest();
    if (!actual.equals(expected)) throw contentChanged(entry, expected, actual, snapshot);
    if (held !== undefined) yield held;
    yield padding(entry.size);
  } finally {
    await handle.close();
  }
}

/** A small listed file's bytes (a `.dockerignore`, a Dockerfile), checked like a streamed one. */
async function readListedFile(entry: WalkEntry, snapshot: SourceSnapshot): Promise<Buffer> {
  const handle = await openListed(entry);
  try {
    assertListed(entry, await handle.stat(), STREAMING);
    const body = await handle.readFile();
    if (body.length !== entry.size) throw sizeChanged(entry, body.length, STREAMING);
    const actual = createHash("sha256").update(body).digest();
    const expected = pinnedDigest(snapshot, entry);
    if (!actual.equals(expected)) throw contentChanged(entry, expected, actual, snapshot);
    return body;
  } finally {
    await handle.close();
  }
}

/**
 * For a builder that sends the Dockerfile apart from the context (a BuildKit session): `rendered` must
 * be what `image`'s Dockerfile, as hashed for the content tag, renders to — the check the tar makes.
 */
export async function assertDockerfileAsHashed(image: ImageLike, rendered: string, snapshot: SourceSnapshot): Promise<void> {
  const spec = specOf(image);
  const own = spec.base.kind === "dockerfile" ? filesFor(spec, snapshot).dockerfile : undefined;
  if (own !== undefined) await assertRendersHashedDockerfile(rendered, own, spec, snapshot);
}

/**
 * The rendered Dockerfile (dockerfile.ts reads the user's file on its own, by path) must be exactly
 * what the hashed Dockerfile renders to: the file itself without layers; with layers, the rendering of
 * a private copy of the hashed bytes (with or without BuildKit, whichever the caller used).
 */
async function assertRendersHashedDockerfile(rendered: string, own: WalkEntry, spec: ImageSpec, snapshot: SourceSnapshot): Promise<void> {
  const hashed = await readListedFile(own, snapshot);
  const same = spec.layers.length === 0 ? rendered === hashed.toString("utf8") : (await renderingsOf(spec, hashed)).includes(rendered);
  if (!same) throw sourceChanged(own, "the Dockerfile rendered for the build is not the one hashed for the content tag", STREAMING);
}

async function renderingsOf(spec: ImageSpec, dockerfile: Buffer): Promise<string[]> {
  const { renderDockerfile } = await import("./dockerfile.js");
  const dir = mkdtempSync(join(tmpdir(), "kiln-dockerfile-"));
  try {
    const path = join(dir, "Dockerfile");
    writeFileSync(path, dockerfile);
    const copy: ImageSpec = { ...spec, base: { ...(spec.base as Extract<ImageSpec["base"], { kind: "dockerfile" }>), dockerfileHostPath: path } };
    return [true, false].flatMap((buildkit) => {
      try {
        return [renderDockerfile(copy, { buildkit })];
      } catch {
        return []; // e.g. secrets without BuildKit: not how it was rendered
      }
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function openListed(entry: WalkEntry): Promise<FileHandle> {
  try {
    return await open(openPath(entry), OPEN_LISTED_FLAGS);
  } catch (error) {
    throw openFailure(entry, error, STREAMING);
  }
}

function contentChanged(entry: WalkEntry, expected: Buffer, actual: Buffer, snapshot: SourceSnapshot): SourceChangedError {
  // A digest from the stat cache that does not match must not be trusted again on the next run.
  snapshot.cache?.forget(entry.hostPath);
  return sourceChanged(
    entry,
    `its content changed (sha256 ${expected.toString("hex").slice(0, 12)}… when the tag was computed, ${actual.toString("hex").slice(0, 12)}… now)`,
    STREAMING,
  );
}
