/**
 * Why a spec module failed to load, in words that name the cause and the fix. The common trap: a
 * spec in a CommonJS project (npm init's default) loading the ES-module-only @kiln packages, which
 * needs require(esm) (Node ≥ 20.19 / ≥ 22.12) or a spec that is an ES module itself.
 */
import { basename, dirname, extname } from "node:path";
import { isTypeScriptFile, moduleFormatOf, packageTypeOf } from "./moduleFormat.js";

export interface SpecLoadFailure {
  message: string;
  hint: string;
}

const DEFAULT_HINT = "Fix the error in the spec file (KILN_DEBUG=1 prints the full stack).";

/** Node's own codes for "CommonJS code could not require() an ES module". */
const REQUIRE_ESM_CODES = new Set(["ERR_REQUIRE_ESM", "ERR_REQUIRE_ASYNC_MODULE"]);
/** An exports map without a "require"/"default" condition, as ES-module-only packages have. */
const NO_REQUIRE_EXPORT = /No "exports" main defined|is not defined by "exports"/;
/** ES module syntax in a file Node runs as CommonJS. */
const ESM_SYNTAX_IN_CJS =
  /Cannot use import statement outside a module|Unexpected token 'export'|Cannot use 'import\.meta' outside a module|await is only valid in async functions and the top level bodies of modules/;
/** CommonJS-only names in a file Node runs as an ES module. */
const CJS_GLOBALS_IN_ESM = /\b(require|module|exports|__dirname|__filename) is not defined in ES module scope/;

function firstLine(text: string): string {
  return text.split("\n", 1)[0]!.trim();
}

/** Why Node runs `file` as CommonJS or as an ES module, for the message. */
function formatReason(file: string): string {
  const ext = extname(file);
  if ([".cjs", ".cts", ".mjs", ".mts"].includes(ext)) return `a ${ext} file`;
  const { manifest } = packageTypeOf(dirname(file));
  if (moduleFormatOf(file) === "module") return `${manifest} has "type": "module"`;
  return manifest ? `${manifest} has no "type": "module"` : `no package.json above it says "type": "module"`;
}

function renamedAs(file: string, format: "module" | "commonjs"): string {
  const typescript = isTypeScriptFile(file);
  const stem = basename(file, extname(file));
  return `${stem}${format === "module" ? (typescript ? ".mts" : ".mjs") : typescript ? ".cts" : ".cjs"}`;
}

function makeModuleFix(file: string): string {
  const { manifest } = packageTypeOf(dirname(file));
  const ext = extname(file);
  const rename = `rename it to ${renamedAs(file, "module")}`;
  if (ext === ".cjs" || ext === ".cts") return `make the spec an ES module: ${rename} and use import/export`;
  return `make the spec an ES module: add "type": "module" to ${manifest ?? "your package.json"}, or ${rename}`;
}

export function specLoadFailure(error: unknown, file: string): SpecLoadFailure {
  const full = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: unknown } | null)?.code;
  const format = moduleFormatOf(file);
  if (format === "commonjs" && (REQUIRE_ESM_CODES.has(code as string) || NO_REQUIRE_EXPORT.test(full))) {
    const canRequireEsm = (process.features as { require_module?: boolean }).require_module === true;
    const why =
      code === "ERR_REQUIRE_ASYNC_MODULE"
        ? "that ES module uses top-level await, which require() cannot load"
        : NO_REQUIRE_EXPORT.test(full)
          ? "that package exports nothing for require() (an ES-module-only package, or a @kiln release before require() support)"
          : canRequireEsm
            ? "require() of it failed"
            : `this Node (${process.version}) does not require() ES modules (Node ≥ 20.19 and ≥ 22.12 do, unless run with --no-experimental-require-module)`;
    return {
      message: `the spec runs as CommonJS (${formatReason(file)}) and require()s an ES module; ${why}: ${firstLine(full)}`,
      hint: `@kiln packages are ES modules. Either ${makeModuleFix(file)}${code === "ERR_REQUIRE_ESM" && !canRequireEsm ? ", or run Node ≥ 20.19 (≥ 22.12 on Node 22), which can require() ES modules" : ""}.`,
    };
  }
  if (format === "commonjs" && ESM_SYNTAX_IN_CJS.test(full)) {
    return {
      message: `the spec runs as CommonJS (${formatReason(file)}) but uses ES module syntax: ${firstLine(full)}`,
      hint: `Either ${makeModuleFix(file)}, or write it with require() and module.exports.`,
    };
  }
  if (format === "module" && CJS_GLOBALS_IN_ESM.test(full)) {
    return {
      message: `the spec runs as an ES module (${formatReason(file)}) but uses CommonJS: ${firstLine(full)}`,
      hint: `Use import (and import.meta.dirname instead of __dirname), or rename the spec to ${renamedAs(file, "commonjs")} to keep it CommonJS.`,
    };
  }
  return { message: full, hint: DEFAULT_HINT };
}
