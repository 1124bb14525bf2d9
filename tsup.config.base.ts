/**
 * The build settings every published package shares: ESM for Node 20, type declarations, source maps.
 * A package's tsup.config.ts is `export default packageConfig()`, plus only what it does differently
 * (more entry points, modules kept external). tsup bundles this file into each package's config when
 * it loads it, so it needs no build of its own. packages/plugin-template keeps a standalone config: it
 * is copied out of the repository by plugin authors.
 */
import { defineConfig, type Options } from "tsup";

export const SHARED_OPTIONS: Options = {
  format: ["esm"],
  dts: true,
  target: "node20",
  platform: "node",
  sourcemap: true,
  clean: true,
};

/** A package's config: src/index.ts unless `entry` says otherwise, then the shared settings, then `overrides`. */
export function packageConfig(overrides: Options = {}) {
  return defineConfig({ entry: ["src/index.ts"], ...SHARED_OPTIONS, ...overrides });
}
