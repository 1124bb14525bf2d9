import { defineConfig } from "tsup";

export default defineConfig({
  entry: ["src/index.ts"],
  format: ["esm"],
  dts: true,
  target: "node20",
  platform: "node",
  sourcemap: true,
  clean: true,
  // @kiln/core is a peer: the user's copy is the one the engine uses, never a bundled one.
  external: ["@kiln/core"],
});
