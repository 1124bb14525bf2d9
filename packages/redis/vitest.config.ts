import { fileURLToPath } from "node:url";
import { defineConfig, mergeConfig } from "vitest/config";
import shared from "../../vitest.shared.js";

// In-process tests run against the workspace sources. The multi-host tests run the real `kiln` CLI,
// which loads the built packages (core, docker and this one): turbo's `test` depends on `build`.
const src = (path: string) => fileURLToPath(new URL(`../${path}`, import.meta.url));

export default mergeConfig(
  shared,
  defineConfig({
    resolve: {
      alias: [
        { find: /^@kiln\/core$/, replacement: src("core/src/index.ts") },
        { find: /^@kiln\/core\/testing$/, replacement: src("core/src/testing/index.ts") },
        { find: /^@kiln\/core\/plugin$/, replacement: src("core/src/plugin.ts") },
        { find: /^@kiln\/docker$/, replacement: src("docker/src/index.ts") },
      ],
    },
    test: {},
  }),
);
