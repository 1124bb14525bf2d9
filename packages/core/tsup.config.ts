import { packageConfig } from "../../tsup.config.base.ts";

// Declarations for the public entries only; cli/* is internal.
const publicEntries = { index: "src/index.ts", plugin: "src/plugin.ts", "testing/index": "src/testing/index.ts" };

export default packageConfig({
  // cli/ts-hooks is registered with module.register by the spec loader, so it needs a file of its own.
  entry: { ...publicEntries, "cli/main": "src/cli/main.ts", "cli/ts-hooks": "src/cli/tsHooks.ts" },
  dts: { entry: publicEntries },
  splitting: true,
  // The CLI must start fast: keep dependencies external and loaded lazily.
  external: ["vitest", "sucrase"],
});
