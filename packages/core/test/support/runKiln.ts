// The real `kiln` binary for core's CLI tests: test-utils' runKilnCli with the caller's env laid over
// process.env and a default deadline.
import type { ChildProcess } from "node:child_process";
import { resolve } from "node:path";
import { KILN_CLI, runKilnCli, type KilnCliRun } from "../../../test-utils/src/kilnCli.js";

export const CORE_DIR = resolve(import.meta.dirname, "../..");
export const KILN_BIN = KILN_CLI;
export type KilnRun = KilnCliRun;

export interface RunKilnOptions {
  cwd: string;
  /** Laid over process.env. */
  env?: NodeJS.ProcessEnv;
  /** SIGKILL after this long. */
  timeoutMs?: number;
  /** Called with all of stderr so far on each chunk (to react to progress, e.g. kill the child). */
  onStderr?: (text: string, child: ChildProcess) => void;
}

export function runKiln(args: string[], { cwd, env = {}, timeoutMs = 120_000, onStderr }: RunKilnOptions): Promise<KilnRun> {
  return runKilnCli(args, { cwd, env: { ...process.env, ...env }, timeoutMs, onStderr });
}
