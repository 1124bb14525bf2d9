/**
 * Opens a .deb with this machine's `dpkg-deb`: `--ctrl-tarfile` (control, md5sums, conffiles,
 * maintainer scripts, triggers…) and `--fsys-tarfile` (the files), each read as a tar stream here
 * (tar-stream). dpkg-deb rather than a library of our own: it reads every form a .deb comes in (ar
 * members data.tar.xz / .zst / .gz / .bz2 / uncompressed, old formats) exactly as dpkg in the image
 * would, and it is on every machine that has apt — which this builder needs anyway to resolve. Node has
 * no xz decoder (nor zstd before Node 22.15), so a pure-JS path would mean another native dependency.
 *
 * File bodies go to a scratch directory (one file per entry, never whole packages in memory); the
 * entries keep the archive's order, type, mode and uid/gid. mtimes are dropped (the layer uses the
 * build epoch).
 */
import { spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { BuildFailedError } from "@kiln/core";
import tarStream, { type Header } from "tar-stream";
import { normalize } from "./debianRootView.js";
import { parseFields } from "./debianStatus.js";
import { readAll } from "./streamsAndText.js";

const DPKG_DEB_DEADLINE_MS = 5 * 60_000;
const MAX_CONTROL_BYTES = 16 * 1024 * 1024;

export interface DebEntry {
  /** Path as the archive names it, relative (`usr/bin/jq`). */
  path: string;
  type: "file" | "directory" | "symlink" | "hardlink";
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** symlink: its target as written; hardlink: the (relative) path it links to. */
  linkname?: string;
  /** file: where its bytes are on this machine. */
  hostPath?: string;
}

export interface DebPackage {
  deb: string;
  /** The control file's text. */
  control: string;
  fields: Map<string, string>;
  /** Every control member but `control` itself: md5sums, conffiles, postinst, triggers… */
  controlFiles: Map<string, { data: Buffer; mode: number }>;
  entries: DebEntry[];
}

export async function openDeb(dpkgDeb: string, deb: string, scratch: string, signal?: AbortSignal): Promise<DebPackage> {
  const controlFiles = new Map<string, { data: Buffer; mode: number }>();
  await readTar(dpkgDeb, ["--ctrl-tarfile", deb], deb, signal, async (header, body) => {
    const name = normalize(header.name);
    if (header.type !== "file" || name === "" || name.includes("/")) return (body.resume(), undefined);
    if ((header.size ?? 0) > MAX_CONTROL_BYTES) throw new Error(`control member ${name} is too large`);
    controlFiles.set(name, { data: await readAll(body), mode: (header.mode ?? 0o644) & 0o7777 });
  });
  const controlData = controlFiles.get("control");
  if (!controlData) throw broken(deb, "it has no control file");
  controlFiles.delete("control");
  const control = controlData.data.toString("utf8");
  const fields = parseFields(control);
  if (!fields.get("Package") || !fields.get("Version") || !fields.get("Architecture"))
    throw broken(deb, "its control file lacks Package, Version or Architecture");

  const dir = join(scratch, "files");
  await mkdir(dir, { recursive: true });
  const entries: DebEntry[] = [];
  await readTar(dpkgDeb, ["--fsys-tarfile", deb], deb, signal, async (header, body) => {
    const path = normalize(header.name);
    const common = { path, mode: (header.mode ?? 0o644) & 0o7777, uid: header.uid ?? 0, gid: header.gid ?? 0, size: 0 };
    switch (header.type) {
      case "directory":
        entries.push({ ...common, type: "directory" });
        break;
      case "symlink":
        entries.push({ ...common, type: "symlink", linkname: header.linkname ?? "" });
        break;
      case "link":
        entries.push({ ...common, type: "hardlink", linkname: normalize(header.linkname ?? "") });
        break;
      case "file":
      case "contiguous-file": {
        const hostPath = join(dir, String(entries.length));
        await pipeline(body, createWriteStream(hostPath));
        entries.push({ ...common, type: "file", size: header.size ?? 0, hostPath });
        return;
      }
      default:
        throw broken(deb, `it holds /${path}, a ${header.type} entry, which an image layer built without running dpkg does not carry`);
    }
    body.resume();
  });
  return { deb, control, fields, controlFiles, entries };
}

/** An entry's body: read it to the end, or `resume()` it to skip it. */
type EntryBody = AsyncIterable<unknown> & { resume(): unknown };
type EntryHandler = (header: Header, body: EntryBody) => Promise<void>;

/** Runs dpkg-deb and hands each entry of the tar it prints to `onEntry`, in order. */
async function readTar(dpkgDeb: string, args: string[], deb: string, signal: AbortSignal | undefined, onEntry: EntryHandler): Promise<void> {
  const child = spawn(dpkgDeb, [...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, LC_ALL: "C" }, signal, timeout: DPKG_DEB_DEADLINE_MS });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
  const exited = new Promise<number>((done) => {
    child.on("error", () => done(-1));
    child.on("close", (code) => done(code ?? -1));
  });
  const extract = tarStream.extract();
  child.stdout.on("error", (error) => extract.destroy(error));
  child.stdout.pipe(extract as unknown as NodeJS.WritableStream);
  try {
    for await (const item of extract) await onEntry(item.header, item);
  } catch (error) {
    child.kill();
    await exited;
    signal?.throwIfAborted();
    if (BuildFailedError.isInstance(error)) throw error;
    throw broken(deb, `${(error as Error).message}${stderr ? ` (${stderr.trim()})` : ""}`);
  }
  const code = await exited;
  signal?.throwIfAborted();
  if (code !== 0) throw broken(deb, `dpkg-deb ${args[0]} exited ${code}: ${stderr.trim()}`);
}

function broken(deb: string, why: string): BuildFailedError {
  return new BuildFailedError(`Cannot unpack ${deb.split("/").pop()}: ${why}`, {
    hint: 'Build this image with a builder that runs steps (builder: "docker" or "buildkit").',
    details: { deb },
  });
}
