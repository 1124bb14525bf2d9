/**
 * The file layers of a copy-only image, one per COPY the Dockerfile builder would run, in the same
 * order (core's `planDockerfile`: sources after installs, config-location copies in place, labels
 * last) and with the same meaning:
 * - a source folder's listed contents land in `dest` (the folder's `.dockerignore` and earlier
 *   `withDockerignore` rules applied by the one listing, walk.ts); `dest` itself is a directory entry;
 * - a source file lands at `dest`, or in it when `dest` ends with `/`;
 * - a relative `dest` is taken from the working directory in effect (declared, else the base's);
 * - after a `withUser`, entries belong to that user (numeric `uid[:gid]`; `root`/`0` is 0:0), as
 *   `COPY --chown` gives them; otherwise to 0:0;
 * - modes as the build context carries them: 0755 for directories and executables, 0644 for other
 *   files, 0777 for links (kept as links, never followed).
 * Parent directories of `dest` are not written: the base's stay as they are (a runtime creates a
 * missing one 0755 root, as Docker's COPY does).
 *
 * The bytes are the hashed bytes: every file is read from the image's pinned source snapshot (the
 * listing and sha256 the content tag was computed from), opened without following links and checked
 * against its pinned digest; any difference is a SourceChangedError before anything is pushed.
 */
import { open } from "node:fs/promises";
import { posix } from "node:path";
import type { Image } from "@kiln/core";
import {
  OPEN_LISTED_FLAGS,
  assertListed,
  compareUtf8,
  filesFor,
  openFailure,
  openPath,
  pinnedDigest,
  planDockerfile,
  requirementsPathInImage,
  sizeChanged,
  sourceChanged,
  type FileGroup,
  type SourceSnapshot,
  type WalkEntry,
} from "@kiln/core/plugin";
import { createHash } from "node:crypto";
import { encodeEntryHeader, padding, type LayerEntryHeader } from "./tarHeader.js";
import { ownerOf, type Owner } from "./users.js";

export interface PlannedEntry {
  header: LayerEntryHeader;
  /** The listed file whose bytes follow the header (files only). */
  source?: WalkEntry;
  /** Bytes made here (a rewritten script or RECORD). */
  data?: Buffer;
  /** A file this build wrote (pip's output), read as it is. */
  hostPath?: string;
}

export interface PlannedLayer {
  /** Index of the spec layer it comes from. */
  layerIndex: number;
  /** What it does, for history and events (`COPY <kind> -> <dest>`). */
  createdBy: string;
  entries: PlannedEntry[];
  /** A Python install (pythonPackages.ts fills the entries); `requirements`: the file, also copied in. */
  python?: { requirements?: WalkEntry };
  /** A Debian package install (aptLayer.ts fills the entries). */
  apt?: { packages: string[] };
}

const READING = "while writing an oci layer";
const CHUNK = 1024 * 1024;

/** The planned file layers, in build order. `baseWorkdir`: the base config's WorkingDir (may be empty). */
export function planSourceLayers(image: Image, snapshot: SourceSnapshot, baseWorkdir: string, mtime: number): PlannedLayer[] {
  const spec = image.spec;
  const groups = new Map<number, FileGroup>(filesFor(image, snapshot).groups.map((g) => [g.layerIndex, g]));
  const plan = planDockerfile(spec);
  const layers: PlannedLayer[] = [];
  // Install steps keep declaration order among themselves, and a pip step copies nothing from the
  // context: the n-th such step is the n-th withPipPackages layer.
  const pipLayers = spec.layers.flatMap((l, i) => (l.kind === "pipPackages" ? [i] : []));
  // Likewise the n-th apt step is the n-th withAptPackages layer (checked first: a package name may say "pip").
  const aptLayers = spec.layers.flatMap((l, i) => (l.kind === "aptPackages" ? [i] : []));
  for (const step of plan.steps) {
    if (step.consumes.length === 0 && step.lines.some((line) => /\bapt-get install -y --no-install-recommends\b/.test(line))) {
      const layerIndex = aptLayers.shift();
      if (layerIndex === undefined) throw new Error("planSourceLayers: an apt step with no withAptPackages layer left (core's plan changed?)");
      const layer = spec.layers[layerIndex] as Extract<(typeof spec.layers)[number], { kind: "aptPackages" }>;
      layers.push({ layerIndex, createdBy: `apt-get install ${layer.packages.join(" ")}`, entries: [], apt: { packages: [...layer.packages] } });
      continue;
    }
    if (step.consumes.length === 0 && step.lines.some((line) => /\bpip\b.*\binstall\b/.test(line))) {
      const layerIndex = pipLayers.shift();
      if (layerIndex === undefined) throw new Error("planSourceLayers: a pip step with no withPipPackages layer left (core's plan changed?)");
      const layer = spec.layers[layerIndex] as Extract<(typeof spec.layers)[number], { kind: "pipPackages" }>;
      layers.push({ layerIndex, createdBy: `pip install ${layer.packages.join(" ")}`, entries: [], python: {} });
      continue;
    }
    for (const consumed of step.consumes) {
      const layer = spec.layers[consumed.layerIndex]!;
      const group = groups.get(consumed.layerIndex);
      if (group === undefined) continue;
      const owner = ownerOf(step.user);
      const cwd = step.workdir !== undefined ? posix.resolve(baseWorkdir || "/", step.workdir) : baseWorkdir || "/";
      if (layer.kind === "requirements") {
        const entry = group.entries[0]!;
        // Where the Docker builder copies it before `pip install -r` (core's requirementsPathInImage).
        const dest = relative(requirementsPathInImage(consumed.layerIndex, layer.name));
        layers.push({
          layerIndex: consumed.layerIndex,
          createdBy: `pip install -r ${layer.name}`,
          entries: [toPlanned(entry, dest, owner, mtime)],
          python: { requirements: entry },
        });
      } else if (layer.kind === "sourceFolder") {
        const dest = posix.resolve(cwd, layer.dest);
        layers.push({ layerIndex: consumed.layerIndex, createdBy: `COPY sourceFolder -> ${dest}`, entries: folderEntries(group, dest, owner, mtime) });
      } else if (layer.kind === "sourceFile") {
        const entry = group.entries[0]!;
        const dest = layer.dest.endsWith("/") ? posix.join(posix.resolve(cwd, layer.dest), entry.path) : posix.resolve(cwd, layer.dest);
        layers.push({ layerIndex: consumed.layerIndex, createdBy: `COPY sourceFile -> ${dest}`, entries: [toPlanned(entry, relative(dest), owner, mtime)] });
      }
    }
  }
  return layers;
}

function folderEntries(group: FileGroup, dest: string, owner: Owner, mtime: number): PlannedEntry[] {
  const base = relative(dest);
  const entries: PlannedEntry[] = [];
  if (base !== "") entries.push({ header: { name: base, type: "directory", mode: 0o755, uid: owner.uid, gid: owner.gid, mtime } });
  for (const entry of group.entries) entries.push(toPlanned(entry, base === "" ? entry.path : `${base}/${entry.path}`, owner, mtime));
  return entries.sort((a, b) => compareUtf8(a.header.name, b.header.name));
}

function toPlanned(entry: WalkEntry, name: string, owner: Owner, mtime: number): PlannedEntry {
  const common = { name, uid: owner.uid, gid: owner.gid, mtime };
  if (entry.type === "dir") return { header: { ...common, type: "directory", mode: 0o755 } };
  if (entry.type === "symlink") return { header: { ...common, type: "symlink", mode: 0o777, linkname: entry.linkTarget ?? "" } };
  return { header: { ...common, type: "file", mode: entry.executable ? 0o755 : 0o644, size: entry.size }, source: entry };
}

function relative(path: string): string {
  return posix.normalize(path).replace(/^\/+/, "").replace(/\/+$/, "");
}

/** The tar bytes of a planned layer (without the end blocks), files read and verified as they go. */
export async function* layerTarChunks(layer: PlannedLayer, snapshot: SourceSnapshot): AsyncGenerator<Buffer> {
  for (const planned of layer.entries) {
    if (planned.data) {
      yield encodeEntryHeader(planned.header);
      yield planned.data;
      yield padding(planned.data.length);
      continue;
    }
    if (planned.hostPath) {
      yield* hostFileChunks(planned, planned.hostPath);
      continue;
    }
    if (!planned.source) {
      yield encodeEntryHeader(planned.header);
      continue;
    }
    yield* fileChunks(planned, planned.source, snapshot);
  }
}

/** A file this build wrote itself (pip's output): its size must not have changed since it was listed. */
async function* hostFileChunks(planned: PlannedEntry, path: string): AsyncGenerator<Buffer> {
  const size = planned.header.size ?? 0;
  const handle = await open(path, "r");
  try {
    yield encodeEntryHeader(planned.header);
    let read = 0;
    while (read < size) {
      const buffer = Buffer.allocUnsafe(Math.min(CHUNK, size - read));
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) throw new Error(`${path} shrank while being written into a layer`);
      read += bytesRead;
      yield bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead);
    }
    yield padding(size);
  } finally {
    await handle.close();
  }
}

async function* fileChunks(planned: PlannedEntry, entry: WalkEntry, snapshot: SourceSnapshot): AsyncGenerator<Buffer> {
  const expected = pinnedDigest(snapshot, entry);
  let handle;
  try {
    handle = await open(openPath(entry), OPEN_LISTED_FLAGS);
  } catch (error) {
    throw openFailure(entry, error, READING);
  }
  try {
    assertListed(entry, await handle.stat(), READING);
    yield encodeEntryHeader(planned.header);
    const hash = createHash("sha256");
    let read = 0;
    while (read < entry.size) {
      const buffer = Buffer.allocUnsafe(Math.min(CHUNK, entry.size - read));
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) throw sizeChanged(entry, read, READING);
      read += bytesRead;
      const chunk = bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead);
      hash.update(chunk);
      yield chunk;
    }
    const probe = await handle.read(Buffer.alloc(1), 0, 1, null);
    if (probe.bytesRead > 0) throw sourceChanged(entry, `it grew beyond the ${entry.size} bytes it had when listed`, READING);
    if (!hash.digest().equals(expected)) throw sourceChanged(entry, "its content is not the content hashed for the tag", READING);
    yield padding(entry.size);
  } finally {
    await handle.close();
  }
}

/** A listed file's whole content (small files: a requirements file), checked against its pinned digest. */
export async function readPinnedFile(entry: WalkEntry, snapshot: SourceSnapshot): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const planned: PlannedEntry = { header: { name: "x", type: "file", mode: 0o644, uid: 0, gid: 0, mtime: 0, size: entry.size }, source: entry };
  for await (const chunk of fileChunks(planned, entry, snapshot)) chunks.push(chunk);
  // fileChunks yields the header first and the padding last: keep the body only.
  return Buffer.concat(chunks).subarray(512, 512 + entry.size);
}
