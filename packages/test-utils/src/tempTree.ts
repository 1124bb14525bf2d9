/** Source trees and Docker config folders written to fresh temp dirs. */
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

/** Writes `files` (path → content) into a fresh temp dir and returns it. */
export async function tempTree(files: Record<string, string>, prefix = "kiln-test-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
  }
  return dir;
}

/** A Docker config dir whose config.json has `auths` for one registry. */
export async function dockerConfigWith(registry: string, username: string, password: string): Promise<string> {
  return tempTree(
    { "config.json": JSON.stringify({ auths: { [registry]: { auth: Buffer.from(`${username}:${password}`).toString("base64") } } }) },
    "kiln-docker-config-",
  );
}
