// Shared bits of the integration tests.
import { mkdtemp, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { BuildEvent } from "@kiln/core";

export interface Collector {
  events: BuildEvent[];
  onEvent: (e: BuildEvent) => void;
  of<T extends BuildEvent["type"]>(type: T): Array<Extract<BuildEvent, { type: T }>>;
}

export function collector(): Collector {
  const events: BuildEvent[] = [];
  return {
    events,
    onEvent: (e: BuildEvent) => events.push(e),
    of<T extends BuildEvent["type"]>(type: T) {
      return events.filter((e): e is Extract<BuildEvent, { type: T }> => e.type === type);
    },
  };
}

/** Writes `files` (path → content) into a fresh temp dir and returns it. */
export async function tempTree(files: Record<string, string>, prefix = "kiln-docker-test-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
  }
  return dir;
}

/** A Docker config dir whose config.json has `auths` for one registry. */
export async function dockerConfigWith(registry: string, username: string, password: string): Promise<string> {
  return tempTree({ "config.json": JSON.stringify({ auths: { [registry]: { auth: Buffer.from(`${username}:${password}`).toString("base64") } } }) }, "kiln-docker-config-");
}
