import { defineConfig } from "tsup";

export default defineConfig({
  // cli/ts-hooks is registered with module.register by the spec loader, so it needs a file of its own.
  entry: { index: "src/index.ts", "testing/index": "src/testing/index.ts", "cli/main": "src/cli/main.ts", "cli/ts-hooks": "src/cli/tsHooks.ts" },
  format: ["esm"],
  dts: { entry: { index: "src/index.ts", "testing/index": "src/testing/index.ts" } },
  target: "node20",
  platform: "node",
  sourcemap: true,
  clean: true,
  splitting: true,
  // The CLI must start fast: keep dependencies external and loaded lazily.
  external: ["vitest", "sucrase"],
});
