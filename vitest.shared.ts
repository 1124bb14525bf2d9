import { defineConfig } from "vitest/config";

/** Shared by every package: real services make tests slow to start, and CI aggregates the JSON reports. */
export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    pool: "forks",
    reporters: ["default", ["json", { outputFile: "test-results.json" }]],
  },
});
