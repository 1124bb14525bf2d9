// Shared bits of the @kiln/buildkit tests.
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { gunzipSync } from "node:zlib";
import type { BuildEvent } from "@kiln/core";
import { docker, ensureBusyboxImage } from "@kiln/test-utils";

export interface Collector {
  events: BuildEvent[];
  onEvent: (e: BuildEvent) => void;
  of<T extends BuildEvent["type"]>(type: T): Array<Extract<BuildEvent, { type: T }>>;
}

export function collector(): Collector {
  const events: BuildEvent[] = [];
  return {
    events,
    onEvent: (e: BuildEvent) => events.push(e),
    of<T extends BuildEvent["type"]>(type: T) {
      return events.filter((e): e is Extract<BuildEvent, { type: T }> => e.type === type);
    },
  };
}

/** Writes `files` (path → content) into a fresh temp dir and returns it. */
export async function tempTree(files: Record<string, string>, prefix = "kiln-buildkit-test-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
  }
  return dir;
}

/** A Docker config dir whose config.json has `auths` for one registry. */
export async function dockerConfigWith(registry: string, username: string, password: string): Promise<string> {
  return tempTree({ "config.json": JSON.stringify({ auths: { [registry]: { auth: Buffer.from(`${username}:${password}`).toString("base64") } } }) }, "kiln-buildkit-config-");
}

/**
 * The local busybox base pushed to an open registry (a standalone buildkitd cannot see the engine's
 * images): returns `<host>/kiln-base/busybox:1.35`.
 */
export async function busyboxInRegistry(host: string): Promise<string> {
  const local = await ensureBusyboxImage();
  const ref = `${host}/kiln-base/busybox:1.35`;
  await docker(["tag", local, ref]);
  await docker(["push", ref]);
  await docker(["rmi", ref]).catch(() => undefined);
  return ref;
}

/** A regular file's content in a (possibly gzipped) tar layer, or undefined (ustar headers, as BuildKit writes them). */
export function fileInLayer(layer: Buffer, path: string): string | undefined {
  const tar = layer[0] === 0x1f && layer[1] === 0x8b ? gunzipSync(layer) : layer;
  const wanted = path.replace(/^\/+/, "");
  let longName: string | undefined;
  for (let offset = 0; offset + 512 <= tar.length; ) {
    const header = tar.subarray(offset, offset + 512);
    if (header.every((b) => b === 0)) break;
    const field = (start: number, length: number) => header.subarray(start, start + length).toString("utf8").replace(/\0.*$/s, "");
    const size = parseInt(field(124, 12).trim() || "0", 8);
    const type = field(156, 1);
    const prefix = field(345, 155);
    const name = longName ?? (prefix ? `${prefix}/${field(0, 100)}` : field(0, 100));
    const body = tar.subarray(offset + 512, offset + 512 + size);
    longName = undefined;
    if (type === "L") longName = body.toString("utf8").replace(/\0.*$/s, "");
    else if ((type === "0" || type === "") && name.replace(/^\.?\/+/, "") === wanted) return body.toString("utf8");
    offset += 512 + Math.ceil(size / 512) * 512;
  }
  return undefined;
}
