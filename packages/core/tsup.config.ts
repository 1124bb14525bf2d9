import { defineConfig } from "tsup";

export default defineConfig({
  entry: { index: "src/index.ts", "testing/index": "src/testing/index.ts", "cli/main": "src/cli/main.ts" },
  format: ["esm"],
  dts: { entry: { index: "src/index.ts", "testing/index": "src/testing/index.ts" } },
  target: "node20",
  platform: "node",
  sourcemap: true,
  clean: true,
  splitting: true,
  // The CLI must start fast: keep dependencies external and loaded lazily.
  external: ["vitest", "tsx"],
});
