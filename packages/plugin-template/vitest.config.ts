import { existsSync } from "node:fs";
import { defineConfig } from "vitest/config";

// Self-contained on purpose (the template is copied out of the monorepo). Inside the Kiln monorepo
// CI sums every package's JSON report (scripts/test-summary.mjs), so only there is one written.
const inKilnMonorepo = existsSync(new URL("../../scripts/test-summary.mjs", import.meta.url));

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 300_000,
    pool: "forks",
    reporters: inKilnMonorepo ? ["default", ["json", { outputFile: "test-results.json" }]] : ["default"],
  },
});
