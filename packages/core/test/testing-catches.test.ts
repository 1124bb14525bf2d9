/**
 * The conformance suites catch what matters: run against a checker and a builder that ignore their
 * AbortSignal (test/fixtures/conformance/deaf.suite.ts, through a vitest of its own), they fail on
 * exactly the cancellation tests and pass the rest.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { expect, it } from "vitest";

const run = promisify(execFile);
const packageDir = fileURLToPath(new URL("..", import.meta.url));

it("a checker and a builder that ignore the signal fail the suites' cancellation tests, and only those", async () => {
  const dir = await mkdtemp(join(tmpdir(), "kiln-conformance-catches-"));
  const report = join(dir, "report.json");
  try {
    const vitest = join(packageDir, "node_modules", ".bin", "vitest");
    const config = join(packageDir, "test", "fixtures", "conformance", "vitest.config.ts");
    // It exits non-zero (tests fail): that is the point; the JSON report says which.
    await run(vitest, ["run", "--config", config, "--reporter=json", `--outputFile=${report}`], { cwd: packageDir, timeout: 90_000 }).catch(() => undefined);
    const results = JSON.parse(await readFile(report, "utf8")) as {
      testResults: Array<{ assertionResults: Array<{ title: string; ancestorTitles: string[]; status: string }> }>;
    };
    const tests = results.testResults.flatMap((file) => file.assertionResults);
    const failed = tests.filter((t) => t.status === "failed").map((t) => t.title);
    const passed = tests.filter((t) => t.status === "passed").map((t) => t.title);
    expect(failed).toHaveLength(4);
    expect(failed).toEqual(
      expect.arrayContaining([
        "an already-aborted signal rejects with an abort error — for an absent and a present image, never an answer",
        expect.stringMatching(/^an abort during a request rejects within 1000 ms/),
        "an already-aborted signal: the build rejects with an abort error and builds nothing",
        expect.stringMatching(/^an abort during the build: it rejects within 5000 ms/),
      ]),
    );
    // The rest of the contract they meet (present, absent, missing platform, dry run, build, force).
    expect(passed).toEqual(
      expect.arrayContaining([
        "returns the image's URI when it exists for every platform",
        "returns null for an image that does not exist",
        "dry run returns the URI it would build, without building",
        "force rebuilds an image that exists",
      ]),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
