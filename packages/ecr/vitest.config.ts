import { fileURLToPath } from "node:url";
import { defineConfig, mergeConfig } from "vitest/config";
import shared from "../../vitest.shared.js";

// Tests run against the workspace sources, so they need no prior `pnpm build`.
// The push test drives @kiln/docker from source too, so one copy of core holds the registered providers.
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
