// A snapshot of the built @kiln/core for a benchmark to load, so a rebuild running meanwhile in the
// checkout cannot pull files from under the measurement; dependencies resolve through a symlink. And
// test-utils' registry helpers, which are TypeScript, loaded through tsx (a dependency of @kiln/core).
import { cpSync, existsSync, mkdirSync, rmSync, symlinkSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

/** Copies packages/core's dist to bench/.work/<name>; exits 2 (naming `script`) when core is not built. Returns the snapshot's dir. */
export function snapshotBuiltCore(root, name, script) {
  const builtCore = path.join(root, "packages/core");
  if (!existsSync(path.join(builtCore, "dist/index.js"))) {
    console.error(`${script}: build @kiln/core first (pnpm --filter @kiln/core build)`);
    process.exit(2);
  }
  const snapshot = path.join(root, "bench/.work", name);
  rmSync(snapshot, { recursive: true, force: true });
  mkdirSync(snapshot, { recursive: true });
  cpSync(path.join(builtCore, "dist"), path.join(snapshot, "dist"), { recursive: true });
  cpSync(path.join(builtCore, "package.json"), path.join(snapshot, "package.json"));
  symlinkSync(path.join(builtCore, "node_modules"), path.join(snapshot, "node_modules"));
  return snapshot;
}

/** packages/test-utils/src/registry.ts, through tsx. */
export async function importTestRegistry(root) {
  const requireFromCore = createRequire(path.join(root, "packages/core/package.json"));
  const tsxDir = path.dirname(requireFromCore.resolve("tsx/package.json"));
  const { register } = await import(pathToFileURL(path.join(tsxDir, "dist/esm/api/index.mjs")).href);
  register();
  return import(pathToFileURL(path.join(root, "packages/test-utils/src/registry.ts")).href);
}
