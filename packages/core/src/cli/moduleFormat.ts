/**
 * Whether Node runs a file as an ES module or as CommonJS, by Node's rules for .mjs/.cjs/.js applied
 * to TypeScript too: `.mjs`/`.mts` are ES modules, `.cjs`/`.cts` CommonJS, and `.js`/`.ts`/`.tsx`
 * whatever the nearest package.json's "type" says (CommonJS without one) — the choice `tsc` and `tsx`
 * make for TypeScript.
 */
import { readFileSync } from "node:fs";
import { dirname, extname, join } from "node:path";

export type ModuleFormat = "module" | "commonjs";

export const TYPESCRIPT_EXTENSIONS: ReadonlySet<string> = new Set([".ts", ".mts", ".cts", ".tsx"]);

export function isTypeScriptFile(file: string): boolean {
  return TYPESCRIPT_EXTENSIONS.has(extname(file));
}

export interface PackageType {
  format: ModuleFormat;
  /** The package.json that decided, if any. */
  manifest?: string;
}

const packageTypeCache = new Map<string, PackageType>();

/** The nearest package.json at or above `dir` and what its "type" makes of .js/.ts files. */
export function packageTypeOf(dir: string): PackageType {
  const cached = packageTypeCache.get(dir);
  if (cached) return cached;
  let found: PackageType;
  const manifest = join(dir, "package.json");
  let text: string | undefined;
  try {
    text = readFileSync(manifest, "utf8");
  } catch {
    text = undefined;
  }
  if (text !== undefined) {
    let type: unknown;
    try {
      type = (JSON.parse(text) as { type?: unknown } | null)?.type;
    } catch {
      type = undefined; // Node reports a broken package.json itself when it loads the module.
    }
    found = { format: type === "module" ? "module" : "commonjs", manifest };
  } else {
    const parent = dirname(dir);
    found = parent === dir ? { format: "commonjs" } : packageTypeOf(parent);
  }
  packageTypeCache.set(dir, found);
  return found;
}

export function moduleFormatOf(file: string): ModuleFormat {
  const ext = extname(file);
  if (ext === ".mts" || ext === ".mjs") return "module";
  if (ext === ".cts" || ext === ".cjs") return "commonjs";
  return packageTypeOf(dirname(file)).format;
}
