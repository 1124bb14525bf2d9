/**
 * Teaches this Node process to run TypeScript spec files (compiled by typescript.ts, as the format moduleFormat.ts picks): a `require` hook for
 * TypeScript that is CommonJS, and module customization hooks (tsHooks.ts, registered with
 * `module.register`, Node ≥ 20.6) for TypeScript that is an ES module. Each is installed once, when
 * the first spec that needs it is loaded.
 */
import { existsSync, readFileSync } from "node:fs";
import { createRequire, register } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { TYPESCRIPT_EXTENSIONS } from "./moduleFormat.js";
import { transpileTypeScript } from "./typescript.js";

interface CompilableModule {
  _compile(code: string, filename: string): unknown;
}

let requireHookInstalled = false;
let importHooksRegistered = false;

/** TypeScript files loaded by Node's CommonJS loader (required, or imported as CommonJS) are compiled to CommonJS. */
export function enableTypeScriptRequire(): void {
  if (requireHookInstalled) return;
  requireHookInstalled = true;
  // `require.extensions` is the CommonJS loader's table (deprecated for packages, still how loaders hook in).
  const extensions = createRequire(import.meta.url).extensions as unknown as Record<string, (module: CompilableModule, filename: string) => void>;
  for (const ext of TYPESCRIPT_EXTENSIONS) {
    extensions[ext] = (module, filename) => {
      module._compile(transpileTypeScript(readFileSync(filename, "utf8"), filename, "commonjs"), filename);
    };
  }
}

/** The directory of the @kiln/core package this code runs from (dist/ chunks sit at different depths). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, "utf8")) as { name?: string }).name === "@kiln/core") return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find @kiln/core's package.json above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

/** `import()` of a TypeScript ES module (and of the TypeScript files it imports) works from now on. */
export function enableTypeScriptImport(): void {
  enableTypeScriptRequire(); // an ES module spec may import a CommonJS TypeScript file
  if (importHooksRegistered) return;
  importHooksRegistered = true;
  register(pathToFileURL(join(packageRoot(), "dist/cli/ts-hooks.js")).href);
}
