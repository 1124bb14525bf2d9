/**
 * TypeScript for spec files without a compiler install: sucrase (pure JavaScript, ~3 MB installed,
 * no native binary or child process) strips the types and, for CommonJS, turns `import`/`export` into
 * `require`/`exports`. Line numbers are kept, so stack traces point at the spec's own lines. Which of
 * the two a file is comes from moduleFormat.ts.
 */
import { createRequire } from "node:module";
import { extname } from "node:path";
import type { Transform } from "sucrase";
import type { ModuleFormat } from "./moduleFormat.js";

let sucrase: typeof import("sucrase") | undefined;

/** Loaded on first use, synchronously (a `require` hook cannot wait), in whichever thread compiles. */
function loadSucrase(): typeof import("sucrase") {
  sucrase ??= createRequire(import.meta.url)("sucrase") as typeof import("sucrase");
  return sucrase;
}

/** The JavaScript Node runs for a TypeScript file, as an ES module or as CommonJS. */
export function transpileTypeScript(source: string, file: string, format: ModuleFormat): string {
  const transforms: Transform[] = ["typescript"];
  if (extname(file) === ".tsx") transforms.push("jsx");
  if (format === "commonjs") transforms.push("imports");
  // sucrase's errors name the file and the line and column ("Error transforming <file>: … (3:26)").
  return loadSucrase().transform(source, {
    transforms,
    filePath: file,
    // Node ≥ 20 runs modern syntax as is; only types (and, for CommonJS, module syntax) change.
    disableESTransforms: true,
    // `await import("esm-only")` in a CommonJS spec stays a real dynamic import.
    preserveDynamicImport: true,
  }).code;
}
