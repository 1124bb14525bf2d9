// Shared bits of the @kiln/buildkit tests (the event collector and temp trees are @kiln/test-utils', shared with @kiln/docker's tests).
import { gunzipSync } from "node:zlib";
import { docker, ensureBusyboxImage } from "@kiln/test-utils";

export { collector, dockerConfigWith, tempTree, type Collector } from "@kiln/test-utils";

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
    const field = (start: number, length: number) =>
      header
        .subarray(start, start + length)
        .toString("utf8")
        .replace(/\0.*$/s, "");
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
