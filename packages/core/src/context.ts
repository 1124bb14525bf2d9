/**
 * The build context: a tar stream produced on the fly from walk.ts's listing (the same list the tag
 * hashes), reading each file as its turn comes — no temp copy, no whole tree in memory, and the
 * consumer's pace is respected (backpressure through tar-stream).
 *
 * Layout: a Kiln-built image gets `Dockerfile` at the root and each copying layer's files under
 * `kiln-layers/<i>/` (contextDirForLayer). A `fromDockerfile` image gets its context at the root,
 * filtered by its `.dockerignore` exactly as `docker build` would, plus `kiln-layers/Dockerfile` (the
 * rendered Dockerfile) and `kiln-layers/<i>/` for any layers added on top.
 *
 * Headers are deterministic: mtime 0, uid/gid 0, no user/group names, mode 0755 for directories and
 * executables, 0644 for other files, 0777 for symlinks. A file whose size changes while it is
 * streamed fails the stream with SourceChangedError instead of producing a corrupt tar.
 */
import { open } from "node:fs/promises";
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
const EPOCH = new Date(0);
const CHUNK = 1 << 20;

/** Where the rendered Dockerfile goes in the context of this spec. */
export function contextDockerfilePath(spec: Pick<ImageSpec, "base">): string {
  return spec.base.kind === "dockerfile" ? `${LAYERS_DIR}/Dockerfile` : "Dockerfile";
}

type PlanItem =
  | { kind: "dir"; path: string }
  | { kind: "dockerfile"; path: string }
  | { kind: "entry"; entry: WalkEntry };

/** Lists the context now (so a missing source fails here) and returns a tar stream that reads lazily. */
export function createBuildContext(image: ImageLike, options: BuildContextOptions = {}): BuildContext {
  const spec = specOf(image);
  const listing = listSpecFiles(spec);
  const dockerfilePath = contextDockerfilePath(spec);
  const plan: PlanItem[] = [];

  for (const group of listing.groups.filter((g) => g.layerIndex === -1)) {
    for (const entry of group.entries) {
      if (entry.path === LAYERS_DIR || entry.path.startsWith(`${LAYERS_DIR}/`)) {
        throw new ValidationError("Dockerfile context entry", entry.path, `the name ${LAYERS_DIR} is reserved for Kiln's layer files`, {
          hint: `Rename it, or exclude it in the context's .dockerignore (\`${LAYERS_DIR}\`).`,
        });
      }
      plan.push({ kind: "entry", entry });
    }
  }
  const layerGroups = listing.groups.filter((g) => g.layerIndex !== -1);
  if (dockerfilePath.startsWith(`${LAYERS_DIR}/`) || layerGroups.length > 0) plan.push({ kind: "dir", path: LAYERS_DIR });
  plan.push({ kind: "dockerfile", path: dockerfilePath });
  for (const group of layerGroups) {
    plan.push({ kind: "dir", path: group.contextDir });
    for (const entry of group.entries) plan.push({ kind: "entry", entry });
  }

  const files = plan.map((item) => (item.kind === "entry" ? item.entry.contextPath : item.path));
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
        await new Promise<void>((resolve) => sink.once("drain", () => resolve()));
      }
      if ((pack as unknown as { destroying: boolean }).destroying) return;
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
