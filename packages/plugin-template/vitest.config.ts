import { defineConfig } from "vitest/config";

// Self-contained on purpose (the template is copied out of the monorepo). In the monorepo CI
// aggregates the JSON report; outside it the file is simply written next to package.json.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 300_000,
    pool: "forks",
    reporters: ["default", ["json", { outputFile: "test-results.json" }]],
  },
});
