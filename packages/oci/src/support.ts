/**
 * What the oci builder can build, decided from the spec alone: an image from a registry base
 * (`fromBase`, `fromDebianBase`, `fromNodeBase`) whose layers copy files, set config — source
 * folders and files, `.dockerignore` rules, env, workdir, user, labels — or install Python packages
 * from binary wheels resolved on this machine (`withPipPackages`, `withRequirements`:
 * pythonPackages.ts), or install Debian packages resolved with this machine's apt against the
 * image's own dpkg state (`withAptPackages`: aptLayer.ts) — when this machine has apt-get, apt-config
 * and dpkg-deb on PATH, and no file is copied into apt's or dpkg's configuration before the install
 * (the oci builder resolves with the base's sources as they are). Anything that needs a step run inside
 * the image (commands, uv projects, node project installs, a Dockerfile) is refused with a reason
 * naming the layer, so the engine can pick another builder. (Whether every Python package has a wheel,
 * or every Debian package installs without running its maintainer scripts, is known only when
 * resolving: such a package fails the build, naming it.)
 */
import { isOciLayoutTarget, type CanBuildAnswer, type Image, type Layer } from "@kiln/core";
import { aptHostTools, aptMissingReason } from "./aptHost.js";
import { isNumericUser, isRootUser } from "./users.js";

const COPY_OR_CONFIG: ReadonlySet<Layer["kind"]> = new Set([
  "sourceFolder",
  "sourceFile",
  "dockerIgnore",
  "env",
  "workdir",
  "user",
  "labels",
  "pipPackages",
  "requirements",
  "aptPackages",
]);

/** Where apt and dpkg read their configuration: a copy there before an apt layer would change what it resolves. */
const APT_CONFIG_ROOTS = ["/etc/apt", "/etc/dpkg", "/usr/share/keyrings", "/var/lib/dpkg"];

/** `env`: the builder's environment (its PATH is where apt is looked for). */
export function ociCanBuild(image: Image, env: NodeJS.ProcessEnv = process.env): CanBuildAnswer {
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
    if (layer.kind === "aptPackages") {
      const tools = aptHostTools(env);
      if (!tools.ok) return { ok: false, reason: `layers[${index}] (${describeLayer(layer)}) needs apt: ${aptMissingReason(tools.missing)}` };
      const configCopy = spec.layers.slice(0, index).findIndex((l) => (l.kind === "sourceFile" || l.kind === "sourceFolder") && intoAptConfig(l.dest));
      if (configCopy >= 0) {
        return {
          ok: false,
          reason: `layers[${configCopy}] (${spec.layers[configCopy]!.kind}) copies into apt's or dpkg's configuration before layers[${index}] (${describeLayer(layer)}); the oci builder resolves packages with the base's apt sources as they are`,
        };
      }
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
    return {
      ok: false,
      reason: 'it has no registry: the oci builder pushes to a registry or writes an OCI image layout (registry: "oci:./images"), never to a local daemon',
    };
  }
  const kilnBase = kilnBaseProblem(spec.base);
  if (kilnBase !== undefined) return { ok: false, reason: kilnBase };
  return { ok: true };
}

function intoAptConfig(dest: string): boolean {
  // A relative destination depends on a working directory: only absolute ones can be judged, and
  // configuration lives at absolute paths.
  const path = dest.replace(/\/+$/, "");
  return APT_CONFIG_ROOTS.some((root) => path === root || path.startsWith(`${root}/`) || root.startsWith(`${path}/`) || path === "");
}

/**
 * An image built on a Kiln image (fromBase(otherImage)): the oci builder reads that base from a
 * registry, so the base must be pushed to one — not kept in a local daemon, nor written to an OCI
 * image layout (which it does not read bases from).
 */
function kilnBaseProblem(base: Image["spec"]["base"]): string | undefined {
  if (base.kind !== "image" || base.image === undefined) return undefined;
  if (isOciLayoutTarget(base.ref) || (base.image.registry !== undefined && isOciLayoutTarget(base.image.registry))) {
    return `its base image ${base.ref} is a Kiln image written to an OCI image layout, and the oci builder reads bases only from a registry; give the base a registry`;
  }
  const first = base.ref.split("/")[0]!;
  const hasRegistry = base.ref.includes("/") && (first.includes(".") || first.includes(":") || first === "localhost");
  if (!hasRegistry) {
    return `its base image ${base.ref} is a Kiln image without a registry (kept in a local daemon), and the oci builder reads bases from a registry; give the base a registry (or set a default registry) so it is pushed there first`;
  }
  return undefined;
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
