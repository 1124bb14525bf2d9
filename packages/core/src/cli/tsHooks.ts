/**
 * Module customization hooks (`module.register`) that let Node import TypeScript ES modules: a spec
 * `.mts` (or `.ts` in a `"type": "module"` package) and the TypeScript files it imports. Registered by
 * the spec loader only when such a spec is loaded; everything that is not TypeScript passes through.
 * A TypeScript file an ES module imports is compiled in the format Node would give it (moduleFormat.ts):
 * CommonJS ones come back as CommonJS source; their own `require`s of TypeScript files are compiled
 * by these hooks or by the `require` hook the spec loader installed (typescriptLoader.ts), whichever
 * path the running Node takes for them.
 */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { isTypeScriptFile, moduleFormatOf } from "./moduleFormat.js";
import { transpileTypeScript } from "./typescript.js";

interface ResolveContext {
  parentURL?: string;
  conditions: string[];
  importAttributes?: Record<string, string>;
}
interface ResolveResult {
  url: string;
  format?: string | null;
  shortCircuit?: boolean;
}
interface LoadContext {
  format?: string | null;
  conditions: string[];
  importAttributes?: Record<string, string>;
}
interface LoadResult {
  format: string;
  source?: string | ArrayBuffer | Uint8Array | null;
  shortCircuit?: boolean;
}

function typeScriptPath(url: string | undefined): string | undefined {
  if (!url?.startsWith("file:")) return undefined;
  const file = fileURLToPath(url);
  return isTypeScriptFile(file) ? file : undefined;
}

/** What TypeScript lets a relative import name that Node's resolver does not find: `./x.js` for
 * `./x.ts`, and (as `tsc` with bundler resolution or `tsx` would) `./x` for `./x.ts` or `./x/index.ts`. */
function typeScriptCandidates(specifier: string): string[] {
  const swapped = /\.(m|c)?js$/.exec(specifier);
  if (swapped) return [`${specifier.slice(0, swapped.index)}.${swapped[1] ?? ""}ts`, ...(swapped[1] ? [] : [`${specifier.slice(0, swapped.index)}.tsx`])];
  if (/\.[cm]?tsx?$/.test(specifier)) return [];
  return [`${specifier}.ts`, `${specifier}.tsx`, `${specifier}/index.ts`];
}

export async function resolve(
  specifier: string,
  context: ResolveContext,
  nextResolve: (specifier: string, context: ResolveContext) => Promise<ResolveResult>,
): Promise<ResolveResult> {
  try {
    return await nextResolve(specifier, context);
  } catch (error) {
    const code = (error as { code?: unknown })?.code;
    const relative = specifier.startsWith("./") || specifier.startsWith("../");
    if (!relative || !typeScriptPath(context.parentURL) || (code !== "ERR_MODULE_NOT_FOUND" && code !== "ERR_UNSUPPORTED_DIR_IMPORT")) throw error;
    for (const candidate of typeScriptCandidates(specifier)) {
      try {
        return await nextResolve(candidate, context);
      } catch {
        // try the next spelling; the original error is the one to report
      }
    }
    throw error;
  }
}

export async function load(url: string, context: LoadContext, nextLoad: (url: string, context: LoadContext) => Promise<LoadResult>): Promise<LoadResult> {
  const file = typeScriptPath(url);
  if (!file) return nextLoad(url, context);
  const format = moduleFormatOf(file);
  const source = await readFile(file, "utf8");
  return { format, source: transpileTypeScript(source, file, format), shortCircuit: true };
}
