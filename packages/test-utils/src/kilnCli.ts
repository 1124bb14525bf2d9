// Runs the real `kiln` binary (@kiln/core's dist/cli/main.js) as a child process, for the CLI tests of
// every package: one place that spawns it, collects its output and kills it at a deadline (a hung CLI
// fails the test's assertions, never the whole run).
import { spawn, type ChildProcess } from "node:child_process";
import { join, resolve } from "node:path";

export const KILN_CLI = join(resolve(import.meta.dirname, "../../core"), "dist/cli/main.js");

export interface KilnCliRun {
  /** null when it was killed at the deadline. */
  code: number | null;
  stdout: string;
  stderr: string;
  /** Wall time from spawn to close. */
  ms: number;
}

export interface KilnCliOptions {
  cwd: string;
  /** The child's whole environment (spread process.env into it to inherit). */
  env: NodeJS.ProcessEnv;
  /** SIGKILLed after this long. */
  timeoutMs: number;
  /** Called with all of stderr so far on every chunk (e.g. to send a signal at the right moment). */
  onStderr?: (stderr: string, child: ChildProcess) => void;
}

export function runKilnCli(args: string[], { cwd, env, timeoutMs, onStderr }: KilnCliOptions): Promise<KilnCliRun> {
  return new Promise((done) => {
    const started = performance.now();
    const child = spawn(process.execPath, [KILN_CLI, ...args], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c) => (stdout += c));
    child.stderr.on("data", (c) => {
      stderr += c;
      onStderr?.(stderr, child);
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr, ms: performance.now() - started });
    });
  });
}
