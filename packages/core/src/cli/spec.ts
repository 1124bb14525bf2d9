/**
 * Loads a spec file — a .ts/.mts/.cts (through tsx's ESM API, imported only then), .js, .mjs or
 * .cjs module — and collects the Images it exports (default or named). `spec.ts#name` picks one.
 * Images made by another copy of @kiln/core are recognised by shape and re-created from their JSON.
 */
import { existsSync, statSync } from "node:fs";
import { extname, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { SpecLoadError, describeValue } from "../errors.js";
import { Image } from "../image.js";

export interface SpecImage {
  exportName: string;
  image: Image;
}

const TS_EXTENSIONS = new Set([".ts", ".mts", ".cts", ".tsx"]);
const JS_EXTENSIONS = new Set([".js", ".mjs", ".cjs"]);

function splitSpecArg(arg: string): { file: string; exportName?: string } {
  const hash = arg.lastIndexOf("#");
  if (hash > 0) return { file: arg.slice(0, hash), exportName: arg.slice(hash + 1) || undefined };
  return { file: arg };
}

function asImage(value: unknown): Image | undefined {
  if (value instanceof Image) return value;
  // An Image from another copy of @kiln/core (e.g. the spec's own node_modules): rebuild it from its JSON.
  if (Image.isImage(value)) return Image.fromJSON((value as { toJSON(): unknown }).toJSON());
  return undefined;
}

export async function importSpecModule(file: string): Promise<Record<string, unknown>> {
  const url = pathToFileURL(file).href;
  if (TS_EXTENSIONS.has(extname(file))) {
    const { tsImport } = await import("tsx/esm/api");
    return (await tsImport(url, import.meta.url)) as Record<string, unknown>;
  }
  return (await import(url)) as Record<string, unknown>;
}

export async function loadSpec(arg: string, cwd: string = process.cwd()): Promise<SpecImage[]> {
  const { file: rawFile, exportName } = splitSpecArg(arg);
  const file = resolve(cwd, rawFile);
  if (!existsSync(file) || !statSync(file).isFile()) {
    throw new SpecLoadError(`Spec file ${describeValue(rawFile)} not found (looked at ${file})`, {
      hint: "Pass the path of a .ts or .js module that exports Images.",
      details: { file },
    });
  }
  const ext = extname(file);
  if (!TS_EXTENSIONS.has(ext) && !JS_EXTENSIONS.has(ext)) {
    throw new SpecLoadError(`Spec file ${describeValue(rawFile)} has extension ${describeValue(ext)}; expected .ts, .mts, .js, .mjs or .cjs`, {
      hint: "Write the spec as a TypeScript or JavaScript module.",
      details: { file },
    });
  }
  let mod: Record<string, unknown>;
  try {
    mod = await importSpecModule(file);
  } catch (error) {
    throw new SpecLoadError(`Loading spec ${describeValue(rawFile)} failed: ${(error as Error)?.message ?? String(error)}`, {
      hint: "Fix the error in the spec file (run it with node/tsx to see the full stack).",
      cause: error,
      details: { file },
    });
  }
  // Named exports first so `export default api` next to `export const api` is listed once, as "api".
  const found: SpecImage[] = [];
  const seen = new Set<unknown>();
  const names = Object.keys(mod).filter((n) => n !== "default").sort();
  if ("default" in mod) names.push("default");
  for (const name of names) {
    const value = mod[name];
    if (seen.has(value)) continue;
    const image = asImage(value);
    if (!image) continue;
    seen.add(value);
    found.push({ exportName: name, image });
  }
  if (exportName !== undefined) {
    const picked = exportName in mod ? asImage(mod[exportName]) : undefined;
    if (!picked) {
      throw new SpecLoadError(`Spec ${describeValue(rawFile)} has no Image export named ${describeValue(exportName)}; its Image exports: ${found.map((f) => f.exportName).join(", ") || "(none)"}`, {
        hint: `Use ${rawFile}#<name> with one of the names listed.`,
        details: { file, exportName },
      });
    }
    return [{ exportName, image: picked }];
  }
  if (found.length === 0) {
    throw new SpecLoadError(`Spec ${describeValue(rawFile)} exports no Image (exports: ${Object.keys(mod).join(", ") || "none"})`, {
      hint: "Export the images, e.g. `export const api = Image.fromDebianBase()…` or `export default image`.",
      details: { file },
    });
  }
  return found;
}
