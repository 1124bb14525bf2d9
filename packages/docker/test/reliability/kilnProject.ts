/**
 * What the CLI reliability tests share: a throw-away user project that installs @kiln/core and
 * @kiln/docker (linked, as a workspace would), and the real `kiln` binary run inside it.
 */
import { mkdirSync, mkdtempSync, realpathSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { runKilnCli, type KilnCliOptions, type KilnCliRun } from "@kiln/test-utils";

export const DOCKER_PKG = resolve(import.meta.dirname, "../..");
export const CORE_PKG = resolve(DOCKER_PKG, "../core");

/** A new project directory (real path) with a package.json and node_modules/@kiln/{core,docker} links. */
export function linkedKilnProject(prefix: string, name: string): string {
  const project = realpathSync(mkdtempSync(join(tmpdir(), prefix)));
  writeFileSync(
    join(project, "package.json"),
    JSON.stringify({ name, private: true, type: "module", dependencies: { "@kiln/core": "*", "@kiln/docker": "*" } }),
  );
  mkdirSync(join(project, "node_modules/@kiln"), { recursive: true });
  symlinkSync(CORE_PKG, join(project, "node_modules/@kiln/core"));
  symlinkSync(DOCKER_PKG, join(project, "node_modules/@kiln/docker"));
  return project;
}

export type CliRun = KilnCliRun;
export type RunKilnOptions = Omit<KilnCliOptions, "cwd">;

/** Runs the built `kiln` CLI in `project` and collects its exit code and output. */
export function runKiln(project: string, args: string[], { env, timeoutMs, onStderr }: RunKilnOptions): Promise<CliRun> {
  return runKilnCli(args, { cwd: project, env, timeoutMs, onStderr });
}
