/**
 * What the oci builder can build, decided from the spec alone: an image from a registry base
 * (`fromBase`, `fromDebianBase`, `fromNodeBase`) whose layers copy files, set config — source
 * folders and files, `.dockerignore` rules, env, workdir, user, labels — or install Python packages
 * from binary wheels resolved on this machine (`withPipPackages`, `withRequirements`:
 * pythonPackages.ts). Anything that needs a step run inside the image (apt installs, commands, uv
 * projects, node project installs, a Dockerfile) is refused with a reason naming the layer, so the
 * engine can pick another builder. (Whether every Python package has a wheel is known only when
 * resolving: a package without one fails the build, naming it.)
 */
import type { CanBuildAnswer, Image, Layer } from "@kiln/core";
import { isNumericUser, isRootUser } from "./users.js";

const COPY_OR_CONFIG: ReadonlySet<Layer["kind"]> = new Set(["sourceFolder", "sourceFile", "dockerIgnore", "env", "workdir", "user", "labels", "pipPackages", "requirements"]);

export function ociCanBuild(image: Image): CanBuildAnswer {
  const spec = image.spec;
  if (spec.base.kind === "dockerfile") {
    return { ok: false, reason: "its base is a Dockerfile (fromDockerfile); the oci builder runs no Dockerfile steps" };
  }
  let user: string | undefined;
  for (const [index, layer] of spec.layers.entries()) {
    if (!COPY_OR_CONFIG.has(layer.kind)) {
      return { ok: false, reason: `layers[${index}] (${describeLayer(layer)}) needs a step run inside the image, which the oci builder cannot do` };
    }
    if ((layer.kind === "pipPackages" || layer.kind === "requirements") && spec.installer === "uv" && (layer.extraArgs?.length ?? 0) > 0) {
      return { ok: false, reason: `layers[${index}] (${describeLayer(layer)}) passes extra arguments meant for uv, and the oci builder resolves with pip` };
    }
    if (layer.kind === "user") user = layer.user;
    if ((layer.kind === "sourceFolder" || layer.kind === "sourceFile") && !isRootUser(user) && !isNumericUser(user!)) {
      return {
        ok: false,
        reason: `layers[${index}] (${layer.kind}) is copied for the user ${JSON.stringify(user)}, a name the oci builder cannot resolve to ids; declare it numerically (withUser("1000") or "1000:1000")`,
      };
    }
  }
  if (spec.registry === undefined) {
    return { ok: false, reason: 'it has no registry: the oci builder pushes to a registry or writes an OCI image layout (registry: "oci:./images"), never to a local daemon' };
  }
  return { ok: true };
}

function describeLayer(layer: Layer): string {
  switch (layer.kind) {
    case "aptPackages":
      return `withAptPackages ${layer.packages.join(" ")}`;
    case "pipPackages":
      return `withPipPackages ${layer.packages.join(" ")}`;
    case "requirements":
      return `withRequirements ${layer.name}`;
    case "uvProject":
      return "withUvProject";
    case "commands":
      return `withCommands ${JSON.stringify(layer.commands[0] ?? "")}${layer.commands.length > 1 ? ` (+${layer.commands.length - 1})` : ""}`;
    case "nodeProject":
      return `withNodeProject ${layer.dest}`;
    default:
      return layer.kind;
  }
}
