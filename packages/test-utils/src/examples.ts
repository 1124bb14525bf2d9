import { execFile } from "node:child_process";

export interface ExampleRun {
  stdout: string;
  stderr: string;
  /** The last line of stdout: where the examples print the image URI. */
  uri: string;
}

/**
 * `pnpm start` in an example folder, as a user runs it: `env` on top of this process's environment,
 * minus KILN_IMAGE_BUILDER (the example's own configuration picks the builder).
 */
export function runExampleStart(exampleDir: string, env: NodeJS.ProcessEnv = {}, timeoutMs = 300_000): Promise<ExampleRun> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  delete childEnv.KILN_IMAGE_BUILDER;
  return new Promise((resolve, reject) => {
    execFile("pnpm", ["start"], { cwd: exampleDir, env: childEnv, timeout: timeoutMs }, (error, stdout, stderr) =>
      error ? reject(new Error(`pnpm start failed: ${error.message}\n${stderr}`)) : resolve({ stdout, stderr, uri: stdout.trim().split("\n").pop()! }),
    );
  });
}
