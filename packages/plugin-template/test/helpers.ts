// Each test file gets its own catalogue directory, so files can run in parallel and leave nothing behind.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { STORE_ENV } from "../src/index.js";

export async function useTempStore(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "kiln-my-builder-"));
  const previous = process.env[STORE_ENV];
  process.env[STORE_ENV] = dir;
  return {
    dir,
    cleanup: async () => {
      if (previous === undefined) delete process.env[STORE_ENV];
      else process.env[STORE_ENV] = previous;
      await rm(dir, { recursive: true, force: true });
    },
  };
}
