/**
 * The image config: the base's, with what the spec declares applied in declared order — as the
 * Dockerfile builder's ENV, WORKDIR, USER and LABEL would — and the new layers appended to
 * `rootfs.diff_ids` and `history`. `created` (and every history entry's) is the build epoch.
 * Values are literal: the Dockerfile builder escapes `$`, so no variable is substituted here either.
 */
import { posix } from "node:path";
import type { ImageSpec } from "@kiln/core";

export interface AddedLayer {
  diffId: string;
  createdBy: string;
}

export function composeConfig(
  base: Record<string, unknown>,
  spec: Readonly<ImageSpec>,
  added: readonly AddedLayer[],
  created: string,
): Record<string, unknown> {
  const baseConfig = (base.config as Record<string, unknown> | undefined) ?? {};
  const config: Record<string, unknown> = { ...baseConfig };
  const env = [...((baseConfig.Env as string[] | undefined) ?? [])];
  const labels: Record<string, string> = { ...((baseConfig.Labels as Record<string, string> | null | undefined) ?? {}) };
  let workdir = (baseConfig.WorkingDir as string | undefined) ?? "";
  let user = baseConfig.User as string | undefined;
  for (const layer of spec.layers) {
    if (layer.kind === "env") {
      for (const [key, value] of layer.vars) {
        const at = env.findIndex((e) => e.split("=", 1)[0] === key);
        if (at >= 0) env[at] = `${key}=${value}`;
        else env.push(`${key}=${value}`);
      }
    } else if (layer.kind === "workdir") workdir = posix.resolve(workdir || "/", layer.path);
    else if (layer.kind === "user") user = layer.user;
    else if (layer.kind === "labels") for (const [key, value] of layer.labels) labels[key] = value;
  }
  if (env.length > 0) config.Env = env;
  if (workdir !== "") config.WorkingDir = workdir;
  if (user !== undefined && user !== "") config.User = user;
  if (Object.keys(labels).length > 0) config.Labels = labels;
  const rootfs = (base.rootfs as { diff_ids?: string[] } | undefined) ?? {};
  const history = [...((base.history as unknown[] | undefined) ?? [])];
  for (const layer of added) history.push({ created, created_by: `kiln oci: ${layer.createdBy}` });
  const out: Record<string, unknown> = {
    ...base,
    created,
    config,
    rootfs: { type: "layers", diff_ids: [...(rootfs.diff_ids ?? []), ...added.map((l) => l.diffId)] },
    history,
  };
  // Fields of the base's own build that would describe a build that did not happen here.
  delete out.container;
  delete out.container_config;
  delete out.docker_version;
  return out;
}
