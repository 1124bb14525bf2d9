import { fileURLToPath } from "node:url";
import { defineConfig, mergeConfig } from "vitest/config";
import shared from "../../vitest.shared.js";

// Tests run against core's sources, so they need no prior `pnpm --filter @kiln/core build`.
const coreSrc = (path: string) => fileURLToPath(new URL(`../core/src/${path}`, import.meta.url));

export default mergeConfig(
  shared,
  defineConfig({
    resolve: {
      alias: [
        { find: /^@kiln\/core$/, replacement: coreSrc("index.ts") },
        { find: /^@kiln\/core\/testing$/, replacement: coreSrc("testing/index.ts") },
        { find: /^@kiln\/core\/plugin$/, replacement: coreSrc("plugin.ts") },
      ],
    },
    test: {},
  }),
);
