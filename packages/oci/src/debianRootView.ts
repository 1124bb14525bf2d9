/**
 * What the image's filesystem holds before an apt layer, read from the base's layers as a runtime
 * would stack them: each layer's whiteouts (`.wh.<name>` removes the name, `.wh..wh..opq` empties a
 * directory) applied to the layers below, then its entries. Every path's type, mode and link target
 * is kept (so extraction can follow the base's merged-/usr symlinks and leave existing directories
 * alone); the bytes only of the few files apt and dpkg need (`keepContent`): the dpkg status, its
 * triggers and architectures, apt's sources, keyrings and preferences, os-release, ld.so.conf.
 *
 * Layers are streamed from the registry (gzip or plain tar; the digest checked as they pass) — never
 * unpacked onto this machine's disk. Later apt layers of the same build add their own entries, so a
 * second `withAptPackages` sees the first.
 */
import { posix } from "node:path";
import { Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import { BuildFailedError } from "@kiln/core";
import { openBlobStream, type RegistryClient } from "@kiln/core/plugin";
import tarStream from "tar-stream";
import type { BasePlatformImage } from "./base.js";
import { readAll } from "./streamsAndText.js";

export type RootEntryType = "file" | "directory" | "symlink" | "other";

export interface RootEntry {
  type: RootEntryType;
  mode: number;
  linkname?: string;
}

const MAX_KEPT_BYTES = 16 * 1024 * 1024;
/** All kept files together (a base may carry any number of files under etc/apt/ and usr/share/keyrings/). */
export const MAX_KEPT_TOTAL_BYTES = 64 * 1024 * 1024;
const MAX_LINK_HOPS = 40;

/** Files whose bytes the apt layer needs (relative paths). */
export function keepContent(path: string): boolean {
  return (
    path === "var/lib/dpkg/status" ||
    path === "var/lib/dpkg/arch" ||
    path === "var/lib/dpkg/triggers/File" ||
    path === "etc/os-release" ||
    path === "usr/lib/os-release" ||
    path === "etc/ld.so.conf" ||
    path.startsWith("etc/ld.so.conf.d/") ||
    path.startsWith("etc/apt/") ||
    path.startsWith("usr/share/keyrings/")
  );
}

export class DebianRootView {
  readonly entries = new Map<string, RootEntry>();
  readonly contents = new Map<string, Buffer>();

  /** Removes a path and everything under it. */
  remove(path: string): void {
    this.entries.delete(path);
    this.contents.delete(path);
    this.removeUnder(path);
  }

  /** Removes everything under a directory (an opaque whiteout), keeping the directory. */
  removeUnder(dir: string): void {
    const prefix = dir === "" ? "" : `${dir}/`;
    for (const key of [...this.entries.keys()]) if (key.startsWith(prefix) && key !== dir) this.entries.delete(key);
    for (const key of [...this.contents.keys()]) if (key.startsWith(prefix) && key !== dir) this.contents.delete(key);
  }

  set(path: string, entry: RootEntry, content?: Buffer): void {
    this.entries.set(path, entry);
    if (content !== undefined) this.contents.set(path, content);
    else this.contents.delete(path);
  }

  /**
   * The path with every symlink among its parent directories followed (relative targets from the
   * link's directory, absolute ones from the image's root), as the kernel resolves it in the image;
   * the last component is left as it is. A loop is an error.
   */
  resolveParents(path: string): string {
    const parts = split(path);
    if (parts.length <= 1) return parts.join("/");
    const last = parts.pop()!;
    return join(this.resolveAll(parts.join("/")), last);
  }

  /** The path with all its components followed through symlinks (the last too). */
  resolveAll(path: string): string {
    let pending = split(path);
    let resolved: string[] = [];
    let hops = 0;
    while (pending.length > 0) {
      const part = pending.shift()!;
      if (part === "..") {
        resolved.pop();
        continue;
      }
      const candidate = [...resolved, part].join("/");
      const entry = this.entries.get(candidate);
      if (entry?.type === "symlink" && entry.linkname !== undefined) {
        if (++hops > MAX_LINK_HOPS) throw new Error(`too many levels of symbolic links resolving /${path} in the base image`);
        const target = entry.linkname;
        if (target.startsWith("/")) resolved = [];
        pending = [...split(target), ...pending];
        continue;
      }
      resolved.push(part);
    }
    return resolved.join("/");
  }

  /** The bytes of a kept file, following symlinks inside the image. */
  read(path: string): Buffer | undefined {
    return this.contents.get(this.resolveAll(path));
  }

  /** Kept files under a directory (after following it), sorted, as [name in dir, bytes]. */
  listKept(dir: string): Array<[string, Buffer]> {
    const real = this.resolveAll(dir);
    const out: Array<[string, Buffer]> = [];
    for (const [path, entry] of this.entries) {
      if (posix.dirname(path) !== real || entry.type === "directory") continue;
      const data = this.read(path);
      if (data !== undefined) out.push([posix.basename(path), data]);
    }
    return out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }
}

/** Reads the base's layers (in order) into a view. */
export async function readDebianRoot(client: RegistryClient, base: BasePlatformImage, baseRef: string, signal?: AbortSignal): Promise<DebianRootView> {
  const view = new DebianRootView();
  for (const layer of base.layers) {
    signal?.throwIfAborted();
    const stream = await openBlobStream(client, base.ref, layer.digest, { signal });
    try {
      await applyLayer(view, stream);
    } catch (error) {
      stream.destroy();
      if ((error as { name?: string }).name === "AbortError" || signal?.aborted) throw error;
      throw new BuildFailedError(`Could not read layer ${layer.digest} of the base image ${baseRef}: ${(error as Error).message}`, {
        hint: "The oci builder reads the base's dpkg status and apt sources from its layers (gzip or plain tar); check the base image, or build with a builder that runs steps.",
        details: { base: baseRef, layer: layer.digest },
        cause: error,
      });
    }
  }
  return view;
}

interface LayerChange {
  path: string;
  whiteout?: "one" | "opaque";
  entry?: RootEntry;
  content?: Buffer;
  hardlinkTo?: string;
}

/** One layer: its whiteouts apply to the layers below (before its own entries). */
export async function applyLayer(view: DebianRootView, compressed: Readable, keptBudget = MAX_KEPT_TOTAL_BYTES): Promise<void> {
  const changes: LayerChange[] = [];
  let keptBytes = 0;
  for (const data of view.contents.values()) keptBytes += data.length;
  const extract = tarStream.extract();
  const source = await decompressed(compressed);
  source.on("error", (error) => extract.destroy(error));
  source.pipe(extract as unknown as NodeJS.WritableStream);
  for await (const item of extract) {
    const header = item.header;
    const path = normalize(header.name);
    const base = posix.basename(path);
    if (base === ".wh..wh..opq") {
      changes.push({ path: parentOf(path), whiteout: "opaque" });
      item.resume();
      continue;
    }
    if (base.startsWith(".wh.")) {
      changes.push({ path: join(parentOf(path), base.slice(4)), whiteout: "one" });
      item.resume();
      continue;
    }
    if (path === "") {
      item.resume();
      continue;
    }
    const mode = (header.mode ?? 0o644) & 0o7777;
    if (header.type === "directory") changes.push({ path, entry: { type: "directory", mode } });
    else if (header.type === "symlink") changes.push({ path, entry: { type: "symlink", mode, linkname: header.linkname ?? "" } });
    else if (header.type === "link") changes.push({ path, entry: { type: "file", mode }, hardlinkTo: normalize(header.linkname ?? "") });
    else if (header.type === "file" || header.type === "contiguous-file") {
      const wanted = keepContent(path) && (header.size ?? 0) <= MAX_KEPT_BYTES;
      if (wanted && (keptBytes += header.size ?? 0) > keptBudget) {
        throw new Error(
          `the apt, dpkg and keyring files of the image (/${path} and before) exceed ${keptBudget / 1024 / 1024} MiB, more than a Debian base carries`,
        );
      }
      changes.push({ path, entry: { type: "file", mode }, ...(wanted ? { content: await readAll(item) } : {}) });
      if (wanted) continue;
    } else changes.push({ path, entry: { type: "other", mode } });
    item.resume();
  }
  for (const change of changes) {
    if (change.whiteout === "opaque") view.removeUnder(change.path);
    else if (change.whiteout === "one") view.remove(change.path);
  }
  const added = new Map<string, Buffer>();
  for (const change of changes) {
    if (!change.entry) continue;
    // An entry replacing a directory by something else drops what was under it.
    const before = view.entries.get(change.path);
    if (before?.type === "directory" && change.entry.type !== "directory") view.removeUnder(change.path);
    let content = change.content;
    if (change.hardlinkTo !== undefined && keepContent(change.path)) content = added.get(change.hardlinkTo) ?? view.contents.get(change.hardlinkTo);
    view.set(change.path, change.entry, content);
    if (content) added.set(change.path, content);
  }
}

/** gzip (1f 8b) or plain tar, told by the first bytes; zstd layers are refused with a clear message. */
async function decompressed(stream: Readable): Promise<Readable> {
  const iterator = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const first = await iterator.next();
  const head: Buffer = first.done ? Buffer.alloc(0) : first.value;
  const whole = Readable.from(
    (async function* () {
      if (head.length > 0) yield head;
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        yield next.value;
      }
    })(),
    { objectMode: false },
  );
  if (head[0] === 0x1f && head[1] === 0x8b) {
    const gunzip = createGunzip();
    whole.on("error", (error) => gunzip.destroy(error));
    return whole.pipe(gunzip);
  }
  if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) {
    throw new Error("the layer is zstd-compressed, which the oci builder cannot read yet");
  }
  return whole;
}

/** A tar name as a relative path: no `./`, no leading or trailing `/`. */
export function normalize(name: string): string {
  return split(name).join("/");
}

function split(path: string): string[] {
  return path.split("/").filter((p) => p !== "" && p !== ".");
}

function parentOf(path: string): string {
  const dir = posix.dirname(path);
  return dir === "." ? "" : dir;
}

function join(dir: string, name: string): string {
  return dir === "" ? name : `${dir}/${name}`;
}
