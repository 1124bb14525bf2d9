/**
 * Answers from an OCI image layout for `oci:<dir>` targets: `index.json` has an entry whose
 * `org.opencontainers.image.ref.name` is the tag, its blob is there, and every requested platform
 * is there too — for an index, the child of that platform and its config and layer blobs; for a
 * single manifest, its config's os/architecture. Any other repository is not its question.
 */
import { readFile, stat } from "node:fs/promises";
import type { Architecture, ImageChecker, ImageCheckOptions } from "@kiln/core";
import { normalizePlatform, platformOfConfig } from "@kiln/core/plugin";
import { layoutDirOf } from "./layoutTarget.js";
import { REF_NAME_ANNOTATION, blobPath, readLayoutIndex, type LayoutDescriptor } from "./layoutWriter.js";

export class OciLayoutImageChecker implements ImageChecker {
  readonly name = "oci-layout";

  answersFor(repository: string): boolean {
    return layoutDirOf(repository) !== undefined;
  }

  async imageExists(repository: string, tag: string, arch?: readonly Architecture[], options?: ImageCheckOptions): Promise<string | null> {
    const dir = layoutDirOf(repository);
    if (dir === undefined) return null;
    options?.signal?.throwIfAborted();
    const index = await readLayoutIndex(dir);
    const entry = index?.manifests?.find((m) => m.annotations?.[REF_NAME_ANNOTATION] === tag);
    if (!entry) return null;
    const platforms = [...new Set((arch ?? []).map((p) => normalizePlatform(p)))];
    if (!(await hasBlob(dir, entry))) return null;
    const document = await readJson(dir, entry.digest);
    if (Array.isArray(document.manifests)) {
      // An index: every requested platform listed, and each listed child asked about complete.
      const children = document.manifests as LayoutDescriptor[];
      const listed = children.map((c) => platformOfDescriptor(c));
      if (!platforms.every((p) => listed.includes(p))) return null;
      for (const [i, child] of children.entries()) {
        if (platforms.length > 0 && !platforms.includes(listed[i]!)) continue;
        if (!(await imageComplete(dir, child))) return null;
      }
      return `${repository}:${tag}`;
    }
    if (!(await imageComplete(dir, entry))) return null;
    if (platforms.length > 0) {
      const config = await readJson(dir, (document.config as LayoutDescriptor).digest);
      const has = platformOfConfig(config as { os?: string; architecture?: string; variant?: string });
      if (!platforms.every((p) => p === has)) return null;
    }
    return `${repository}:${tag}`;
  }
}

function platformOfDescriptor(d: LayoutDescriptor): string {
  if (!d.platform) return "";
  return normalizePlatform(`${d.platform.os}/${d.platform.architecture}${d.platform.variant ? `/${d.platform.variant}` : ""}`);
}

/** A manifest, its config and every layer blob are in the layout. */
async function imageComplete(dir: string, manifest: LayoutDescriptor): Promise<boolean> {
  if (!(await hasBlob(dir, manifest))) return false;
  const document = await readJson(dir, manifest.digest);
  const config = document.config as LayoutDescriptor | undefined;
  if (!config || !(await hasBlob(dir, config))) return false;
  for (const layer of (document.layers as LayoutDescriptor[] | undefined) ?? []) if (!(await hasBlob(dir, layer))) return false;
  return true;
}

async function hasBlob(dir: string, descriptor: LayoutDescriptor): Promise<boolean> {
  try {
    return (await stat(blobPath(dir, descriptor.digest))).size === descriptor.size;
  } catch {
    return false;
  }
}

async function readJson(dir: string, digest: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(blobPath(dir, digest), "utf8")) as Record<string, unknown>;
}
