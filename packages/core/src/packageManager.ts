/** Which package manager a project uses, read from its lockfile, for install hints. */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";

const LOCKFILES: ReadonlyArray<[file: string, command: string]> = [
  ["pnpm-lock.yaml", "pnpm add -D"],
  ["yarn.lock", "yarn add -D"],
  ["bun.lockb", "bun add -d"],
  ["bun.lock", "bun add -d"],
  ["package-lock.json", "npm install -D"],
  ["npm-shrinkwrap.json", "npm install -D"],
];

/**
 * The command that adds a dev dependency in `projectDir`: the lockfile nearest to it (a workspace's
 * lockfile sits at its root) names the package manager; npm when there is none.
 */
export function addDevCommand(projectDir: string): string {
  let dir = projectDir;
  for (;;) {
    for (const [file, command] of LOCKFILES) if (existsSync(join(dir, file))) return command;
    const parent = dirname(dir);
    if (parent === dir) return "npm install -D";
    dir = parent;
  }
}
