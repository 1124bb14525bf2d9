/**
 * Just enough of the docker CLI config to honour a user's explicit per-host credential helper
 * (e.g. `"credHelpers": { "<account>.dkr.ecr.<region>.amazonaws.com": "ecr-login" }`).
 */
import { readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

function configPath(env: NodeJS.ProcessEnv): string {
  return path.join(env.DOCKER_CONFIG || path.join(os.homedir(), ".docker"), "config.json");
}

function hostOfKey(key: string): string {
  return key.replace(/^[a-z]+:\/\//i, "").split("/")[0]!.toLowerCase();
}

/** The credHelpers entry the user configured for `host`, if any. A missing or broken file has none. */
export async function dockerCredHelperFor(host: string, env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  let config: { credHelpers?: Record<string, unknown> };
  try {
    config = JSON.parse(await readFile(configPath(env), "utf8")) as typeof config;
  } catch {
    return undefined;
  }
  const wanted = hostOfKey(host);
  for (const [key, helper] of Object.entries(config?.credHelpers ?? {})) {
    if (hostOfKey(key) === wanted && typeof helper === "string" && helper) return helper;
  }
  return undefined;
}
