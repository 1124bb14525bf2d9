import { defineConfig } from "vitest/config";

/** Shared by every package: real services make tests slow to start, and CI aggregates the JSON reports. */
export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    pool: "forks",
    // Builds record their explain inputs under <project>/.kiln (explainRecord.ts): not in tests, where the
    // project is often this checkout and a record left by an earlier run would add a build.reason event.
    // Tests of the records turn them on themselves.
    env: { KILN_EXPLAIN_RECORDS: "0" },
    reporters: ["default", ["json", { outputFile: "test-results.json" }]],
  },
});
