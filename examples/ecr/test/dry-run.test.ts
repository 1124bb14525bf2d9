/**
 * `pnpm start` as a user runs it here: a dry run with no AWS credentials. It must exit 0, print the
 * spec's URI on stdout, report on stderr that ECR could not tell, and build nothing.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";

const exampleDir = fileURLToPath(new URL("..", import.meta.url));
let home: string;

beforeAll(async () => {
  home = await mkdtemp(path.join(os.tmpdir(), "kiln-ecr-example-home-"));
});
afterAll(() => rm(home, { recursive: true, force: true }));

function run(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ["--import", "tsx", ...args], { cwd: exampleDir, env, timeout: 90_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === "number" ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

it("prints the URI it would push and exits 0, without AWS access", async () => {
  // No AWS credentials anywhere: an empty HOME, no AWS_* variables, no instance metadata.
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("AWS_")));
  Object.assign(env, {
    HOME: home,
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_ACCOUNT_ID: "210987654321",
    AWS_REGION: "eu-west-1",
    ECR_REPOSITORY: "kiln/example-test",
  });
  const { code, stdout, stderr } = await run(["main.ts", "--dry-run"], env);
  expect(code, stderr).toBe(0);

  const uri = stdout.trim().split("\n").pop()!;
  expect(uri).toMatch(/^210987654321\.dkr\.ecr\.eu-west-1\.amazonaws\.com\/kiln\/example-test:[0-9a-f]{32}$/);
  // The ECR checker ran and said it could not tell (no credentials), with the fix.
  expect(stderr).toMatch(/check ecr: error .*AWS_PROFILE/);
  expect(stderr).toContain("dry run: would build and push");

  // The same URI as the spec declares (computed in this process, from the same files).
  process.env.AWS_ACCOUNT_ID = "210987654321";
  process.env.AWS_REGION = "eu-west-1";
  process.env.ECR_REPOSITORY = "kiln/example-test";
  const { image } = await import("../spec.js");
  expect(uri).toBe(image.uri);

  // Nothing was built: the daemon has no image of that name.
  const inspected = await new Promise<number>((resolve) => execFile("docker", ["image", "inspect", uri], (error) => resolve(error ? 1 : 0)));
  expect(inspected).toBe(1);
});
