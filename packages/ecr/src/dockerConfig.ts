/**
 * Just enough of the docker CLI config to honour a user's explicit per-host credential helper
 * (e.g. `"credHelpers": { "<account>.dkr.ecr.<region>.amazonaws.com": "ecr-login" }`). The file is
 * found and its keys normalised by core's own docker-config functions (`dockerConfigPath`,
 * `normalizeConfigKey`), so both agree on which entry belongs to a host.
 */
import { readFile } from "node:fs/promises";
import { dockerConfigPath, normalizeConfigKey } from "@kiln/core/plugin";

/**
 * The registry host a docker config key or server URL names: `https://host/v1/` → `host`,
 * lower-cased; Docker Hub's many names → `docker.io` (core's `normalizeConfigKey`).
 */
export const configKeyHost: (key: string) => string = normalizeConfigKey;

/** The credHelpers entry the user configured for `host`, if any. A missing or broken file has none. */
export async function dockerCredHelperFor(host: string, env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  let config: { credHelpers?: Record<string, unknown> };
  try {
    config = JSON.parse(await readFile(dockerConfigPath(env), "utf8")) as typeof config;
  } catch {
    return undefined;
  }
  const wanted = configKeyHost(host);
  for (const [key, helper] of Object.entries(config?.credHelpers ?? {})) {
    if (configKeyHost(key) === wanted && typeof helper === "string" && helper) return helper;
  }
  return undefined;
}
