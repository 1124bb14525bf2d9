// What core's CLI tests set up before running the real `kiln`: this checkout's CLI built, and a
// temporary user project that installs the fixture builder plugin with npm and links this @kiln/core.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startRegistry, type TestRegistry } from "../../../test-utils/src/registry.js";
import { makeProject, type TempProject } from "../fixtures/plugins/projects.js";
import { CORE_DIR } from "./runKiln.js";

/** Builds core's dist (skipped with KILN_TEST_SKIP_BUILD=1, when it is known to be fresh). */
export function buildCoreCli(): void {
  if (!process.env.KILN_TEST_SKIP_BUILD) execFileSync("pnpm", ["exec", "tsup"], { cwd: CORE_DIR, stdio: "pipe" });
}

/** An ESM project with the `kiln-fixture-cli` plugin installed; specs in it can import @kiln/core (linked, as a workspace or `npm link` would). */
export function linkedCliProject(): TempProject {
  const project = makeProject("npm", {}, { "kiln-fixture-cli": "cli-plugin" }, { type: "module" });
  mkdirSync(join(project.projectDir, "node_modules/@kiln"), { recursive: true });
  symlinkSync(CORE_DIR, join(project.projectDir, "node_modules/@kiln/core"));
  return project;
}

export interface CliFixture {
  registry: TestRegistry;
  project: TempProject;
  /** KILN_LOCK_DIR for the file's builds (never the machine's). */
  lockDir: string;
  stop(): Promise<void>;
}

/** For a test file's beforeAll: the CLI built, a local registry, a lock dir and a linked project; `stop()` in its afterAll. */
export async function startCliFixture(lockDirPrefix: string): Promise<CliFixture> {
  buildCoreCli();
  const registry = await startRegistry();
  const lockDir = mkdtempSync(join(tmpdir(), lockDirPrefix));
  const project = linkedCliProject();
  return {
    registry,
    project,
    lockDir,
    async stop() {
      await registry.stop();
      project.cleanup();
      rmSync(lockDir, { recursive: true, force: true });
    },
  };
}
