/**
 * The build context: a tar stream produced on the fly from walk.ts's listing (the same list the tag
 * hashes), reading each file as its turn comes — no temp copy, no whole tree in memory, and the
 * consumer's pace is respected (backpressure through tar-stream).
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
 * Headers are deterministic: mtime 0, uid/gid 0, no user/group names, mode 0755 for directories and
 * executables, 0644 for other files, 0777 for symlinks. A file whose size changes while it is
 * streamed fails the stream with SourceChangedError instead of producing a corrupt tar.
 */
import { open, readFile } from "node:fs/promises";
import { Readable } from "node:stream";
import tar, { type Header, type Pack } from "tar-stream";
import { KilnError, SourceNotFoundError, ValidationError } from "./errors.js";
import { specOf, type ImageLike } from "./hash.js";
import type { ImageSpec } from "./layers.js";
import { listSpecFiles, type WalkEntry } from "./walk.js";

export interface BuildContextOptions {
  /** The rendered Dockerfile text (dockerfile.ts's `renderDockerfile`). Default: rendered for the
   * classic builder (no BuildKit features), loaded lazily. */
  dockerfile?: string;
}

export interface BuildContext {
  /** The context as an uncompressed tar. */
  stream: Readable;
  /** Every path in the tar, in order (directories included, no trailing slash). */
  files: string[];
  /** Where the Dockerfile is inside the context (pass it as the build's `dockerfile`). */
  dockerfilePath: string;
}

/** A source file changed while the build context was being streamed. */
export class SourceChangedError extends KilnError {
  override readonly code: string = "KILN_SOURCE_CHANGED";
  static override isInstance(error: unknown): error is SourceChangedError {
    return KilnError.isInstance(error) && error.code === "KILN_SOURCE_CHANGED";
  }
}

type HeaderArg = Partial<Header> & Pick<Header, "name">;

const LAYERS_DIR = "kiln-layers";
/** Where a `fromDockerfile` image's Dockerfile goes when it cannot be used in place (the docker CLI uses a random `.dockerfile.<id>`). */
const HIDDEN_DOCKERFILE = ".dockerfile.kiln";
const EPOCH = new Date(0);
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

function dockerfilePlacement(spec: Pick<ImageSpec, "base" | "layers">, listing: ReturnType<typeof listSpecFiles>): DockerfilePlacement {
  if (spec.base.kind !== "dockerfile") return { path: "Dockerfile", add: true, ignore: false };
  if (spec.layers.length > 0) return { path: `${LAYERS_DIR}/Dockerfile`, add: true, ignore: true };
  const own = listing.dockerfile?.contextPath;
  const inContext = listing.groups.some((g) => g.layerIndex === -1 && g.entries.some((e) => e.contextPath === own && e.type === "file"));
  return inContext && own ? { path: own, add: false, ignore: false } : { path: HIDDEN_DOCKERFILE, add: true, ignore: true };
}

type PlanItem =
  | { kind: "dir"; path: string }
  | { kind: "dockerfile"; path: string }
  | { kind: "dockerignore"; hostPath?: string; append: string }
  | { kind: "entry"; entry: WalkEntry };

/** Lists the context now (so a missing source fails here) and returns a tar stream that reads lazily. */
export function createBuildContext(image: ImageLike, options: BuildContextOptions = {}): BuildContext {
  const spec = specOf(image);
  const listing = listSpecFiles(spec);
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
        plan.push({ kind: "dockerignore", hostPath: entry.hostPath, append: dockerfilePath });
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

  const pack = tar.pack();
  const dockerfileText = options.dockerfile !== undefined ? Promise.resolve(options.dockerfile) : null;
  void produce(pack, plan, () => dockerfileText ?? renderDefaultDockerfile(image));
  return { stream: Readable.from(pack as AsyncIterable<Buffer>, { objectMode: false }), files, dockerfilePath };
}

async function renderDefaultDockerfile(image: ImageLike): Promise<string> {
  // Lazy: the renderer is only needed when the caller did not render the Dockerfile itself.
  // @ts-ignore -- dockerfile.ts is written alongside this module (helper A)
  const mod = (await import("./dockerfile.js")) as { renderDockerfile?: (image: unknown, options: { buildkit: boolean }) => string };
  if (typeof mod.renderDockerfile !== "function") throw new KilnError("renderDockerfile is not available", { hint: "Pass `dockerfile` to createBuildContext." });
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

async function produce(pack: Pack, plan: PlanItem[], dockerfile: () => Promise<string>): Promise<void> {
  try {
    for (const item of plan) {
      if ((pack as unknown as { destroying: boolean }).destroying || pack.destroyed) return;
      if (item.kind === "dir") {
        await addEntry(pack, { name: item.path, type: "directory", mode: 0o755 });
      } else if (item.kind === "dockerignore") {
        // The user's patterns, then the Dockerfile Kiln added (as the docker CLI does for its own).
        const own = item.hostPath ? await readFile(item.hostPath, "utf8") : "";
        const body = Buffer.from(`${own}${own === "" || own.endsWith("\n") ? "" : "\n"}${item.append}\n`, "utf8");
        await addEntry(pack, { name: ".dockerignore", type: "file", mode: 0o644, size: body.length }, body);
      } else if (item.kind === "dockerfile") {
        const body = Buffer.from(await dockerfile(), "utf8");
        await addEntry(pack, { name: item.path, type: "file", mode: 0o644, size: body.length }, body);
      } else {
        const { entry } = item;
        if (entry.type === "dir") await addEntry(pack, { name: entry.contextPath, type: "directory", mode: 0o755 });
        else if (entry.type === "symlink") await addEntry(pack, { name: entry.contextPath, type: "symlink", mode: 0o777, linkname: entry.linkTarget ?? "" });
        else await streamFile(pack, entry);
      }
    }
    pack.finalize();
  } catch (error) {
    pack.destroy(error as Error);
  }
}

function header(h: HeaderArg): HeaderArg {
  return { ...h, mtime: EPOCH, uid: 0, gid: 0, uname: "", gname: "" };
}

function addEntry(pack: Pack, h: HeaderArg, body?: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (error?: Error | null) => (error ? reject(error) : resolve());
    const sink = body !== undefined ? pack.entry(header(h), body, done) : pack.entry(header(h), done);
    sink.on("error", () => undefined); // reported through `done` and the pack's own error
  });
}

async function streamFile(pack: Pack, entry: WalkEntry): Promise<void> {
  let handle;
  try {
    handle = await open(entry.hostPath, "r");
  } catch (error) {
    throw new SourceNotFoundError(`Cannot read ${JSON.stringify(entry.hostPath)} for the build context: ${(error as Error).message}`, {
      hint: "A source file disappeared or became unreadable after the image was declared; retry once it is stable.",
      details: { path: entry.hostPath },
      cause: error,
    });
  }
  try {
    let sink!: ReturnType<Pack["entry"]>;
    const finished = new Promise<void>((resolve, reject) => {
      sink = pack.entry(header({ name: entry.contextPath, type: "file", mode: entry.executable ? 0o755 : 0o644, size: entry.size }), (error) =>
        error ? reject(error) : resolve(),
      );
    });
    finished.catch(() => undefined); // observed below; avoid an unhandled rejection if we throw first
    sink.on("error", () => undefined); // the pack stream carries the error to the consumer
    let remaining = entry.size;
    while (remaining > 0) {
      const buffer = Buffer.allocUnsafe(Math.min(CHUNK, remaining));
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) throw changed(entry, `it shrank below the ${entry.size} bytes it had when listed`);
      remaining -= bytesRead;
      if (!sink.write(bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead))) {
        // A consumer that stops reading destroys the entry, which then never drains: wake up on
        // close/error too, or the file handle and this promise would hang until GC.
        await new Promise<void>((resolve) => {
          const wake = () => resolve();
          sink.once("drain", wake);
          sink.once("close", wake);
          sink.once("error", wake);
        });
      }
      if ((pack as unknown as { destroying: boolean }).destroying || pack.destroyed || (sink as unknown as { destroyed: boolean }).destroyed) return;
    }
    const probe = await handle.read(Buffer.alloc(1), 0, 1, null);
    if (probe.bytesRead > 0) throw changed(entry, `it grew beyond the ${entry.size} bytes it had when listed`);
    (sink as unknown as { end(): void }).end();
    await finished;
  } finally {
    await handle.close();
  }
}

function changed(entry: WalkEntry, what: string): SourceChangedError {
  return new SourceChangedError(`${JSON.stringify(entry.hostPath)} changed while the build context was streamed: ${what}`, {
    hint: "Stop whatever is writing to the source tree (or exclude the file with .dockerignore), then build again.",
    details: { path: entry.hostPath, contextPath: entry.contextPath, expectedSize: entry.size },
  });
}
