/**
 * Loads a spec file — a .ts/.mts/.cts/.tsx (compiled by the TypeScript loader, imported only then),
 * .js, .mjs or .cjs module — and collects the Images it exports (default or named). `spec.ts#name`
 * picks one. Images made by another copy of @kiln/core are recognised by shape and re-created from
 * their JSON. A spec is CommonJS or an ES module by Node's rules (extension, then the nearest
 * package.json's "type"); a CommonJS spec reaches the ES module @kiln/core through require(esm).
 */
import { existsSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { extname, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { SpecLoadError, describeValue } from "../errors.js";
import { Image } from "../image.js";
import { isGroup, type Group } from "../group.js";
import { isTypeScriptFile, moduleFormatOf } from "./moduleFormat.js";
import { specLoadFailure } from "./specLoadFailure.js";

export interface SpecImage {
  exportName: string;
  image: Image;
}

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

/** What `import()` of a CommonJS module gives: its named exports, and module.exports as the default
 * (compiled `export default` already sets `exports.default`, marked by `__esModule`). */
function commonJsNamespace(exports: unknown): Record<string, unknown> {
  if (exports === null || typeof exports !== "object") return { default: exports };
  const named = exports as Record<string, unknown>;
  if (named.__esModule) return { ...named };
  const proto = Object.getPrototypeOf(exports) as unknown;
  return proto === Object.prototype || proto === null ? { ...named, default: exports } : { default: exports };
}

export async function importSpecModule(file: string): Promise<Record<string, unknown>> {
  if (isTypeScriptFile(file)) {
    const { enableTypeScriptImport, enableTypeScriptRequire } = await import("./typescriptLoader.js");
    if (moduleFormatOf(file) === "commonjs") {
      enableTypeScriptRequire();
      return commonJsNamespace(createRequire(file)(file));
    }
    enableTypeScriptImport();
  }
  return (await import(pathToFileURL(file).href)) as Record<string, unknown>;
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
  if (!isTypeScriptFile(file) && !JS_EXTENSIONS.has(ext)) {
    throw new SpecLoadError(`Spec file ${describeValue(rawFile)} has extension ${describeValue(ext)}; expected .ts, .mts, .cts, .js, .mjs or .cjs`, {
      hint: "Write the spec as a TypeScript or JavaScript module.",
      details: { file },
    });
  }
  let mod: Record<string, unknown>;
  try {
    mod = await importSpecModule(file);
  } catch (error) {
    const failure = specLoadFailure(error, file);
    throw new SpecLoadError(`Loading spec ${describeValue(rawFile)} failed: ${failure.message}`, {
      hint: failure.hint,
      cause: error,
      details: { file },
    });
  }
  // Named exports first so `export default api` next to `export const api` is listed once, as "api".
  const found: SpecImage[] = [];
  const seen = new Set<unknown>();
  const names = Object.keys(mod)
    .filter((n) => n !== "default")
    .sort();
  if ("default" in mod) names.push("default");
  for (const name of names) {
    const value = mod[name];
    if (seen.has(value)) continue;
    const image = asImage(value);
    if (!image) continue;
    seen.add(value);
    found.push({ exportName: name, image });
  }
  // group("name", [...]) exports (group.ts): `#name` selects one; images only reachable through a
  // group are part of the whole spec too.
  const groups = new Map<string, Group>();
  for (const name of names) {
    const value = mod[name];
    if (isGroup(value) && !groups.has(value.name)) groups.set(name, value);
  }
  const known = new Map(found.map((f) => [JSON.stringify(f.image.spec), f.exportName]));
  const membersOf = (name: string, g: Group): SpecImage[] =>
    g.images.map((member, i) => {
      const image = asImage(member)!;
      return { exportName: known.get(JSON.stringify(image.spec)) ?? `${name}[${i}]`, image };
    });
  if (exportName !== undefined && isGroup(mod[exportName])) return membersOf(exportName, mod[exportName] as Group);
  if (exportName === undefined) {
    for (const [name, g] of groups) {
      for (const member of membersOf(name, g)) {
        const key = JSON.stringify(member.image.spec);
        if (known.has(key)) continue;
        known.set(key, member.exportName);
        found.push(member);
      }
    }
  }
  if (exportName !== undefined) {
    const picked = exportName in mod ? asImage(mod[exportName]) : undefined;
    if (!picked) {
      const groupNames = [...groups.keys()];
      throw new SpecLoadError(
        `Spec ${describeValue(rawFile)} has no Image export named ${describeValue(exportName)}; its Image exports: ${found.map((f) => f.exportName).join(", ") || "(none)"}${groupNames.length ? `; its groups: ${groupNames.join(", ")}` : ""}`,
        {
          hint: `Use ${rawFile}#<name> with one of the names listed.`,
          details: { file, exportName },
        },
      );
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
