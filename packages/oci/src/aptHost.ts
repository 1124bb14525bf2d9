/**
 * The host programs the oci builder needs for `withAptPackages`: `apt-get` (resolves and downloads
 * against the image's own package state, aptResolve.ts), `apt-config` (reads this machine's network
 * settings for apt) and `dpkg-deb` (opens the .deb files, debianPackage.ts). Looked up on PATH of
 * the builder's environment, synchronously, so `canBuild` can answer before anything is done: a
 * machine without them cannot build such an image, and the engine picks another builder.
 */
import { accessSync, constants, statSync } from "node:fs";
import { delimiter, join } from "node:path";

export const APT_HOST_PROGRAMS = ["apt-get", "apt-config", "dpkg-deb"] as const;

export interface AptHostTools {
  aptGet: string;
  aptConfig: string;
  dpkgDeb: string;
}

export type AptHostAnswer = { ok: true; tools: AptHostTools } | { ok: false; missing: string[]; path: string };

export function aptHostTools(env: NodeJS.ProcessEnv): AptHostAnswer {
  const path = env.PATH ?? "";
  const found = APT_HOST_PROGRAMS.map((name) => findOnPath(name, path));
  const missing = APT_HOST_PROGRAMS.filter((_, i) => found[i] === undefined);
  if (missing.length > 0) return { ok: false, missing, path };
  return { ok: true, tools: { aptGet: found[0]!, aptConfig: found[1]!, dpkgDeb: found[2]! } };
}

/** The reason `canBuild` gives when the host lacks them. */
export function aptMissingReason(missing: readonly string[]): string {
  return `this machine has no ${missing.join(", ")} on PATH: the oci builder resolves and unpacks Debian packages with the host's apt and dpkg-deb (install apt, or build with a builder that runs steps)`;
}

function findOnPath(name: string, path: string): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}
