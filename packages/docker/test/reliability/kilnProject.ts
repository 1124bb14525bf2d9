/**
 * What the CLI reliability tests share: a throw-away user project that installs @kiln/core and
 * @kiln/docker (linked, as a workspace would), and the real `kiln` binary run inside it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, realpathSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const DOCKER_PKG = resolve(import.meta.dirname, "../..");
export const CORE_PKG = resolve(DOCKER_PKG, "../core");

/** A new project directory (real path) with a package.json and node_modules/@kiln/{core,docker} links. */
export function linkedKilnProject(prefix: string, name: string): string {
  const project = realpathSync(mkdtempSync(join(tmpdir(), prefix)));
  writeFileSync(join(project, "package.json"), JSON.stringify({ name, private: true, type: "module", dependencies: { "@kiln/core": "*", "@kiln/docker": "*" } }));
  mkdirSync(join(project, "node_modules/@kiln"), { recursive: true });
  symlinkSync(CORE_PKG, join(project, "node_modules/@kiln/core"));
  symlinkSync(DOCKER_PKG, join(project, "node_modules/@kiln/docker"));
  return project;
}

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunKilnOptions {
  /** The child's whole environment (spread process.env into it to inherit). */
  env: NodeJS.ProcessEnv;
  /** SIGKILLed after this long (a hang fails the test's assertions instead of the whole run). */
  timeoutMs: number;
  /** Called with all of stderr so far on every chunk (e.g. to send a signal at the right moment). */
  onStderr?: (stderr: string, child: ChildProcess) => void;
}

/** Runs the built `kiln` CLI in `project` and collects its exit code and output. */
export function runKiln(project: string, args: string[], { env, timeoutMs, onStderr }: RunKilnOptions): Promise<CliRun> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [join(CORE_PKG, "dist/cli/main.js"), ...args], { cwd: project, env, stdio: ["ignore", "pipe", "pipe"] });
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
      done({ code, stdout, stderr });
    });
  });
}
