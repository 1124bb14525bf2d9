/**
 * `registry: "oci:<dir>"`: images go into OCI image layouts on this machine instead of a registry.
 * Each image name is its own layout, `<dir>/<name>` (so `oci:./images` + `api` → `./images/api`),
 * tagged by its content tag in `index.json` (`org.opencontainers.image.ref.name`) — what
 * `skopeo copy oci:./images/api:<tag> …` reads. A relative `<dir>` is taken from the working
 * directory of the process (for the CLI: where `kiln` runs).
 */
import { resolve } from "node:path";
import { OCI_LAYOUT_PREFIX, isOciLayoutTarget } from "@kiln/core";

/** The layout directory of a repository `oci:<dir>/<name>` as checkers receive it (or of registry + name). */
export function layoutDirOf(repository: string): string | undefined {
  if (!isOciLayoutTarget(repository)) return undefined;
  return resolve(repository.slice(OCI_LAYOUT_PREFIX.length));
}
