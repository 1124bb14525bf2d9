/**
 * `Image`: an immutable, fluent, JSON-serialisable image declaration. Every `with*` validates its
 * input at once (a typed error names the field) and returns a new `Image`; the spec is deep-frozen.
 *
 * Decisions worth knowing:
 * - Host paths resolve against `process.cwd()` at declaration (or pass a `file:` URL, e.g.
 *   `new URL("./src", import.meta.url)`); a missing path throws `SourceNotFoundError` at once.
 * - Relative destinations are relative to the image's working directory (Docker semantics). Kiln never
 *   sets a `WORKDIR` you did not declare, so a base image's own WORKDIR is kept.
 * - `withSourceFolder(src)` copies the folder itself: default destination `./<basename of src>`.
 *   `withSourceFile(src)` likewise defaults to `./<basename>`; a destination ending in `/` (or `.`) is
 *   a directory and the file keeps its name.
 * - `withNodeProject(dir)` copies the project's contents to `dest` (default `.`, the working directory).
 * - `fromDockerfile` images accept further layers: they are appended after the user's Dockerfile (see
 *   dockerfile.ts). `clone({ extendable: false })` forbids further layers.
 * - `fromBase(ref)` without layers is not built: its `uri` is `ref` itself.
 */
import { readFileSync, statSync } from "node:fs";
import { basename, dirname, posix, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { refuseCredentialsInLayerFiles } from "./credentialFiles.js";
import { assertDockerfileAcceptsLayers } from "./dockerfile.js";
import { describeValue, SourceNotFoundError, ValidationError } from "./errors.js";
import { IgnoreMatcher, parseDockerignore } from "./dockerignore.js";
import { checkBasePlatforms, MAX_CHAIN_DEPTH } from "./graph.js";
import { computeTag, explainTag, type TagExplanation } from "./hash.js";
import { rejectUnknownKeys } from "./optionKeys.js";
import { baseReference } from "./pinnedReference.js";
import { parseReference } from "./reference.js";
import type { Architecture, BaseSpec, ImageSpec, Layer, NodePackageManager, PipOptions, PythonInstaller, SecretMount } from "./layers.js";
import {
  optionsObject,
  refuseCredentialUrls,
  requireString,
  validateAptPackage,
  validateCommand,
  validateContainerPath,
  validateContextFileName,
  validateEnvKey,
  validateEnvValue,
  validateExtraArg,
  validateImageReference,
  validateIndexUrl,
  validateLabelKey,
  validateLabelValue,
  validateNodeVersion,
  validatePipRequirement,
  validatePlatforms,
  validatePythonVersion,
  validateRegistry,
  validateRepositoryName,
  validateSecretId,
  validateSecretMounts,
  validateStageName,
  validateTag,
  validateUser,
} from "./validate.js";

export const DEFAULT_PYTHON_VERSION: [number, number] = [3, 11];
export const DEFAULT_NODE_VERSION = 20;
export const DEFAULT_IMAGE_NAME = "kiln";
/** uv is copied from this image (`COPY --from=<uvImage> /uv /uvx /usr/local/bin/`). */
export const DEFAULT_UV_IMAGE = "ghcr.io/astral-sh/uv:0.8.15";
export const DEFAULT_PLATFORMS: Architecture[] = ["linux/amd64"];
export const KILN_SPEC_VERSION = 1;

/** The keys every constructor's options accept (a typo is a ValidationError naming the nearest). */
const COMMON_OPTION_KEYS: readonly string[] = ["registry", "name", "platform"];

export interface CommonImageOptions {
  registry?: string;
  name?: string;
  platform?: Architecture[];
}

/** The base-pinning choice of an image built on an existing image (see pinBase.ts). */
export interface PinBaseOption {
  /**
   * Resolve the base reference to its registry digest when the tag is computed, and build `FROM
   * ref@digest`: the tag changes when the base tag moves upstream. Beats the global setting
   * (build({ pinBase }), init, KILN_PIN_BASE, "pinBase" in kiln.config.json); `false` never pins this image.
   */
  pinBase?: boolean;
}

export interface DebianBaseOptions extends CommonImageOptions, PinBaseOption {
  pythonVersion?: [number, number];
  /** Default `python:<X.Y>-slim-bookworm`; a Kiln `Image` makes this image depend on it (see fromBase). */
  baseImage?: string | Image;
  installer?: PythonInstaller;
  uvImage?: string;
}

export interface NodeBaseOptions extends CommonImageOptions, PinBaseOption {
  nodeVersion?: number;
  /** Default `node:<N>-bookworm-slim`; a Kiln `Image` makes this image depend on it (see fromBase). */
  baseImage?: string | Image;
}

export interface DockerfileOptions extends CommonImageOptions {
  /** The build context directory; default: the Dockerfile's directory. */
  context?: string | URL;
  buildArgs?: Record<string, string>;
  target?: string;
  /**
   * Ids of the build secrets the Dockerfile's own `RUN --mount=type=secret,id=<id>` steps read; their
   * values are given at build time like withCommands' secrets (BuildKit only; ids hashed, values never).
   */
  secrets?: string[];
}

export interface CloneOptions {
  /** `null` removes the registry (a local-only image). */
  registry?: string | null;
  name?: string;
  /** An explicit tag instead of the automatic content tag; `null` returns to the automatic tag. */
  tag?: string | null;
  platform?: Architecture[];
  extendable?: boolean;
  installer?: PythonInstaller;
  uvImage?: string;
  /** The image's own base-pinning choice (PinBaseOption); `null` returns to the global setting. */
  pinBase?: boolean | null;
}

export interface UvProjectOptions {
  pyproject: string | URL;
  uvLock: string | URL;
  extraArgs?: string[];
}

export interface NodeProjectOptions {
  dest?: string;
  manager?: NodePackageManager;
}

/** The optional last argument of `withCommands`. */
export interface CommandOptions {
  /**
   * Build secrets mounted into each of these commands' RUN steps (BuildKit only): an id (the file
   * appears at `/run/secrets/<id>`) or `{ id, target }`. Values are supplied at build time, never
   * declared: `build(image, { secrets: { ID: value } })`, `kiln build --secret id=ID`, or the env var ID.
   */
  secrets?: Array<string | SecretMount>;
}

export type ImageJSON = ImageSpec & { kilnSpecVersion: 1 };

const LOCKFILES: Record<NodePackageManager, string[]> = {
  npm: ["package-lock.json", "npm-shrinkwrap.json"],
  pnpm: ["pnpm-lock.yaml"],
};

export class Image {
  readonly spec: Readonly<ImageSpec>;

  private constructor(spec: ImageSpec) {
    this.spec = deepFreeze(spec);
  }

  /** A new Image after the graph checks (platforms covered by the base's, graph.ts). */
  private static withCheckedBase(spec: ImageSpec): Image {
    checkBasePlatforms(spec);
    return new Image(spec);
  }

  // ---- constructors -------------------------------------------------------------------------

  static fromDebianBase(options?: DebianBaseOptions): Image {
    const o = optionsObject("fromDebianBase options", options);
    rejectUnknownKeys("fromDebianBase options", o, [...COMMON_OPTION_KEYS, "pythonVersion", "baseImage", "installer", "uvImage", "pinBase"]);
    const python = validatePythonVersion("pythonVersion", o.pythonVersion ?? DEFAULT_PYTHON_VERSION);
    const base = imageBase("baseImage", o.baseImage ?? `python:${python[0]}.${python[1]}-slim-bookworm`);
    return Image.withCheckedBase({
      base: { ...base, python, ...pinChoice(o.pinBase) },
      layers: [],
      ...common("fromDebianBase", o),
      installer: validateInstaller("installer", o.installer ?? "uv"),
      uvImage: validateImageReference("uvImage", o.uvImage ?? DEFAULT_UV_IMAGE),
      extendable: true,
    });
  }

  static fromNodeBase(options?: NodeBaseOptions): Image {
    const o = optionsObject("fromNodeBase options", options);
    rejectUnknownKeys("fromNodeBase options", o, [...COMMON_OPTION_KEYS, "nodeVersion", "baseImage", "pinBase"]);
    const node = validateNodeVersion("nodeVersion", o.nodeVersion ?? DEFAULT_NODE_VERSION);
    const base = imageBase("baseImage", o.baseImage ?? `node:${node}-bookworm-slim`);
    return Image.withCheckedBase({
      base: { ...base, node, ...pinChoice(o.pinBase) },
      layers: [],
      ...common("fromNodeBase", o),
      installer: "uv",
      uvImage: DEFAULT_UV_IMAGE,
      extendable: true,
    });
  }

  /**
   * An existing image. Not built unless layers are added; without layers `uri` is `ref`.
   * `ref` may be a Kiln `Image`: this image then depends on it — its content tag goes into this
   * image's tag, `FROM` names its tagged reference, and `build()` builds it first when missing (graph.ts).
   */
  static fromBase(ref: string | Image, options?: CommonImageOptions & PinBaseOption): Image {
    const o = optionsObject("fromBase options", options);
    rejectUnknownKeys("fromBase options", o, [...COMMON_OPTION_KEYS, "pinBase"]);
    return Image.withCheckedBase({
      base: { ...imageBase("fromBase ref", ref), ...pinChoice(o.pinBase) },
      layers: [],
      ...common("fromBase", o),
      installer: "uv",
      uvImage: DEFAULT_UV_IMAGE,
      extendable: true,
    });
  }

  /** A Dockerfile with its context (default: the Dockerfile's directory) and build args. */
  static fromDockerfile(file: string | URL, options?: DockerfileOptions): Image {
    const o = optionsObject("fromDockerfile options", options);
    rejectUnknownKeys("fromDockerfile options", o, [...COMMON_OPTION_KEYS, "context", "buildArgs", "target", "secrets"]);
    const dockerfileHostPath = resolveHostPath("fromDockerfile file", file, "file");
    const contextHostPath = resolveHostPath("fromDockerfile context", o.context ?? dirname(dockerfileHostPath), "directory");
    const buildArgs = Object.entries(o.buildArgs ?? {}).map(([k, v]): [string, string] => [
      validateEnvKey("buildArgs key", k),
      validateBuildArgValue(`buildArgs.${k}`, v),
    ]);
    const base: BaseSpec = { kind: "dockerfile", dockerfileHostPath, contextHostPath, buildArgs };
    if (o.target !== undefined) base.target = validateStageName("target", o.target);
    const secrets = dockerfileSecrets("fromDockerfile secrets", o.secrets);
    if (secrets !== undefined) base.secrets = secrets;
    return new Image({
      base,
      layers: [],
      ...common("fromDockerfile", o),
      installer: "uv",
      uvImage: DEFAULT_UV_IMAGE,
      extendable: true,
    });
  }

  /** Rebuilds an Image from `toJSON()` output, validating every field (host paths are not checked on disk,
   * so a remote builder can load a spec declared elsewhere). */
  static fromJSON(json: unknown): Image {
    return new Image(parseImageJSON(typeof json === "string" ? parseJSONText(json) : json));
  }

  /** The Kiln image this one is built on (fromBase(otherImage)), or undefined for a plain base reference. */
  get baseImage(): Image | undefined {
    const nested = this.spec.base.kind === "image" ? this.spec.base.image : undefined;
    return nested === undefined ? undefined : new Image(copySpec(nested));
  }

  /**
   * This image with its Kiln base replaced by `base` (graph.ts: registry or platforms applied down the
   * chain) and `FROM` naming `ref` (default: `base.uri`; the engine passes the URI the base was built at).
   * Platforms are not compared here (a chain changed image by image passes through mismatches):
   * `build()` and `mapChain` check the finished chain.
   */
  withResolvedBase(base: Image, ref: string = base.uri): Image {
    if (this.spec.base.kind !== "image" || this.spec.base.image === undefined) {
      throw new ValidationError("base", this.toString(), "is not built on a Kiln image");
    }
    const spec = copySpec(this.spec);
    spec.base = { ...(spec.base as Extract<BaseSpec, { kind: "image" }>), ref: validateImageReference("base ref", ref), image: copySpec(base.spec) };
    return new Image(spec);
  }

  /**
   * This image with its base pinned to `digest` (`sha256:<64 hex>`), as pinBase resolves it: the
   * digest goes into the content tag and the Dockerfile's `FROM ref@digest`. A base whose reference
   * already names a digest keeps it (the digest given must be that one).
   */
  withBaseDigest(digest: string): Image {
    if (this.spec.base.kind !== "image")
      throw new ValidationError("withBaseDigest", this.spec.name, "only an image built on an existing image has a base to pin");
    const value = validateBaseDigest("withBaseDigest", digest);
    const own = parseReference(this.spec.base.ref).digest;
    if (own !== undefined && own !== value)
      throw new ValidationError("withBaseDigest", value, `the base reference ${this.spec.base.ref} already names another digest`);
    const spec = copySpec(this.spec);
    if (spec.base.kind === "image" && own === undefined) spec.base.digest = value;
    return new Image(spec);
  }

  /**
   * This image with its uv image (`uvImage`, copied by `COPY --from`) pinned to `digest`, as pinBase
   * resolves it: the digest goes into the content tag and `COPY --from=uvImage@digest`. A uv image
   * reference that already names a digest keeps it (the digest given must be that one).
   */
  withUvDigest(digest: string): Image {
    const value = validateBaseDigest("withUvDigest", digest);
    const own = parseReference(this.spec.uvImage).digest;
    if (own !== undefined && own !== value)
      throw new ValidationError("withUvDigest", value, `the uv image reference ${this.spec.uvImage} already names another digest`);
    const spec = copySpec(this.spec);
    if (own === undefined) spec.uvDigest = value;
    return new Image(spec);
  }

  /** True for an Image from any copy of @kiln/core. */
  static isImage(value: unknown): value is Image {
    return value instanceof Image || (typeof value === "object" && value !== null && (value as { [IMAGE_MARKER]?: boolean })[IMAGE_MARKER] === true);
  }

  clone(options?: CloneOptions): Image {
    const o = optionsObject("clone options", options);
    rejectUnknownKeys("clone options", o, ["registry", "name", "tag", "platform", "extendable", "installer", "uvImage", "pinBase"]);
    const spec = copySpec(this.spec);
    if (o.registry === null) delete spec.registry;
    else if (o.registry !== undefined) spec.registry = validateRegistry("registry", o.registry);
    if (o.name !== undefined) spec.name = validateRepositoryName("name", o.name, spec.registry);
    else validateRepositoryName("name", spec.name, spec.registry);
    if (o.tag === null) delete spec.tag;
    else if (o.tag !== undefined) spec.tag = validateTag("tag", o.tag);
    if (o.platform !== undefined) spec.platform = validatePlatforms("platform", o.platform);
    if (o.extendable !== undefined) {
      if (typeof o.extendable !== "boolean") throw new ValidationError("extendable", o.extendable, "expected true or false");
      spec.extendable = o.extendable;
    }
    if (o.installer !== undefined) {
      spec.installer = validateInstaller("installer", o.installer);
      // A uv digest pinned for the other installer would stay in the tag with nothing copying uv.
      if (spec.installer !== this.spec.installer) delete spec.uvDigest;
    }
    if (o.uvImage !== undefined && o.uvImage !== spec.uvImage) {
      spec.uvImage = validateImageReference("uvImage", o.uvImage);
      delete spec.uvDigest; // the digest of the other reference
    }
    if (o.pinBase !== undefined) {
      if (spec.base.kind !== "image") throw new ValidationError("pinBase", o.pinBase, "only an image built on an existing image has a base to pin");
      if (o.pinBase === null) delete spec.base.pin;
      else spec.base.pin = validatePinBase(o.pinBase);
    }
    if (o.platform !== undefined) checkBasePlatforms(spec);
    return new Image(spec);
  }

  // ---- layers --------------------------------------------------------------------------------

  withAptPackages(...packages: string[]): Image {
    const list = nonEmptyList("withAptPackages", packages).map((p, i) => validateAptPackage(`withAptPackages[${i}]`, p));
    return this.addLayer("withAptPackages", { kind: "aptPackages", packages: list });
  }

  /** `withPipPackages("pandas", "numpy<2")` or `withPipPackages("torch", { indexUrl: "https://..." })`. */
  withPipPackages(...args: [...packages: string[], options: PipOptions] | string[]): Image {
    const last = args[args.length - 1];
    const options = typeof last === "object" && last !== null ? (last as PipOptions) : undefined;
    const packages = (options ? args.slice(0, -1) : args) as unknown[];
    const list = nonEmptyList("withPipPackages", packages).map((p, i) => validatePipRequirement(`withPipPackages[${i}]`, p));
    return this.addLayer("withPipPackages", { kind: "pipPackages", packages: list, ...pipOptions("withPipPackages", options) });
  }

  withRequirements(file: string | URL, options?: PipOptions): Image {
    const hostPath = resolveHostPath("withRequirements", file, "file");
    const name = validateContextFileName("withRequirements file name", basename(hostPath));
    const layer: Layer = { kind: "requirements", hostPath, name, ...pipOptions("withRequirements", options) };
    refuseCredentialsInLayerFiles("withRequirements", layer, this.spec.layers);
    return this.addLayer("withRequirements", layer);
  }

  /**
   * Each command runs as its own `RUN` through `/bin/sh -c` (you asked for a shell; Kiln adds none of its own).
   * A last `{ secrets: ["NPM_TOKEN", { id, target }] }` mounts build secrets into those RUNs (see CommandOptions).
   */
  withCommands(...args: [...commands: string[], options: CommandOptions] | string[]): Image {
    const last = args[args.length - 1];
    const options = typeof last === "object" && last !== null ? (last as CommandOptions) : undefined;
    const commands = (options ? args.slice(0, -1) : args) as unknown[];
    const list = nonEmptyList("withCommands", commands).map((c, i) => validateCommand(`withCommands[${i}]`, c));
    const layer: Layer = { kind: "commands", commands: list };
    const secrets = commandSecrets("withCommands", options);
    if (secrets.length > 0) layer.secrets = secrets; // no secrets: no field, so specs, JSON and tags are unchanged
    return this.addLayer("withCommands", layer);
  }

  withEnvVars(vars: Record<string, string>): Image {
    const entries = recordEntries("withEnvVars", vars).map(([k, v]): [string, string] => [
      validateEnvKey("withEnvVars key", k),
      validateEnvValue(`withEnvVars.${k}`, v),
    ]);
    return this.addLayer("withEnvVars", { kind: "env", vars: entries });
  }

  withWorkdir(path: string): Image {
    return this.addLayer("withWorkdir", { kind: "workdir", path: validateContainerPath("withWorkdir", path) });
  }

  /** Copies the folder (filtered by the image's ignore rules) to `dest`, default `./<basename>`. */
  withSourceFolder(src: string | URL, dest?: string): Image {
    const hostPath = resolveHostPath("withSourceFolder", src, "directory");
    const target = dest === undefined ? `./${basename(hostPath)}` : validateContainerPath("withSourceFolder dest", dest);
    if (dest === undefined) validateContainerPath("withSourceFolder dest", target);
    return this.addLayer("withSourceFolder", { kind: "sourceFolder", hostPath, dest: target });
  }

  /** Copies one file to `dest`, default `./<basename>`; a `dest` ending in `/` is a directory. */
  withSourceFile(src: string | URL, dest?: string): Image {
    const hostPath = resolveHostPath("withSourceFile", src, "file");
    const name = validateContextFileName("withSourceFile file name", basename(hostPath));
    let target = dest === undefined ? `./${name}` : validateContainerPath("withSourceFile dest", dest);
    if (target.endsWith("/") || target === "." || target.endsWith("/.")) target = posix.join(target, name);
    return this.addLayer("withSourceFile", { kind: "sourceFile", hostPath, dest: validateContainerPath("withSourceFile dest", target) });
  }

  /** A .dockerignore whose patterns apply to every later source folder, uv and node project. */
  withDockerignore(path: string | URL): Image {
    const hostPath = resolveHostPath("withDockerignore", path, "file");
    const patterns = parseDockerignore(readFileSync(hostPath, "utf8")).map((p, i) => requireString(`withDockerignore pattern ${i}`, p));
    new IgnoreMatcher(patterns); // compiles every pattern: a malformed one fails here, not at build time
    return this.addLayer("withDockerignore", { kind: "dockerIgnore", hostPath, patterns });
  }

  /** Copies pyproject.toml + uv.lock and installs the locked dependencies (not the project itself). */
  withUvProject(o: UvProjectOptions): Image {
    if (typeof o !== "object" || o === null) throw new ValidationError("withUvProject", o, "expected { pyproject, uvLock }");
    rejectUnknownKeys("withUvProject options", o, ["pyproject", "uvLock", "extraArgs"]);
    const layer: Layer = {
      kind: "uvProject",
      pyprojectHostPath: resolveHostPath("withUvProject pyproject", o.pyproject, "file"),
      lockHostPath: resolveHostPath("withUvProject uvLock", o.uvLock, "file"),
    };
    if (o.extraArgs !== undefined) layer.extraArgs = argList("withUvProject extraArgs", o.extraArgs);
    refuseCredentialsInLayerFiles("withUvProject", layer, this.spec.layers);
    return this.addLayer("withUvProject", layer);
  }

  /** A node project: package.json + lockfile first, install with the lockfile's manager, then the sources. */
  withNodeProject(dir: string | URL, options?: NodeProjectOptions): Image {
    const o = optionsObject("withNodeProject options", options);
    rejectUnknownKeys("withNodeProject options", o, ["dest", "manager"]);
    const hostPath = resolveHostPath("withNodeProject", dir, "directory");
    resolveHostPath("withNodeProject package.json", resolve(hostPath, "package.json"), "file");
    const dest = validateContainerPath("withNodeProject dest", o.dest ?? ".");
    if (o.manager !== undefined && !(o.manager in LOCKFILES)) {
      throw new ValidationError("withNodeProject manager", o.manager, "supported managers are npm and pnpm");
    }
    const candidates = o.manager ? [o.manager] : (Object.keys(LOCKFILES) as NodePackageManager[]).reverse();
    for (const manager of candidates) {
      for (const lockfile of LOCKFILES[manager]) {
        if (isFile(resolve(hostPath, lockfile))) {
          const layer: Layer = { kind: "nodeProject", hostPath, dest, manager, lockfile };
          refuseCredentialsInLayerFiles("withNodeProject", layer, this.spec.layers);
          return this.addLayer("withNodeProject", layer);
        }
      }
    }
    const expected = candidates.flatMap((m) => LOCKFILES[m]).join(" or ");
    throw new SourceNotFoundError(`withNodeProject: no lockfile (${expected}) in ${hostPath}`, {
      hint: `run \`${o.manager ?? "npm"} install\` in that folder and commit the lockfile; Kiln installs exactly what the lockfile names`,
      details: { field: "withNodeProject", path: hostPath },
    });
  }

  withLabels(labels: Record<string, string>): Image {
    const entries = recordEntries("withLabels", labels).map(([k, v]): [string, string] => [
      validateLabelKey("withLabels key", k),
      validateLabelValue(`withLabels.${k}`, v),
    ]);
    return this.addLayer("withLabels", { kind: "labels", labels: entries });
  }

  /** Later instructions run as `user` (which must exist in the image: create it with withCommands first). */
  withUser(user: string): Image {
    return this.addLayer("withUser", { kind: "user", user: validateUser("withUser", user) });
  }

  // ---- accessors -----------------------------------------------------------------------------

  get registry(): string | undefined {
    return this.spec.registry;
  }
  get name(): string {
    return this.spec.name;
  }
  get platform(): readonly Architecture[] {
    return this.spec.platform;
  }
  get layers(): readonly Layer[] {
    return this.spec.layers;
  }
  get base(): Readonly<BaseSpec> {
    return this.spec.base;
  }
  get extendable(): boolean {
    return this.spec.extendable;
  }

  /** The explicit tag, else the content tag (32 lowercase hex, computed from the spec and file contents). */
  get tag(): string {
    return this.spec.tag ?? computeTag(this.spec);
  }

  /** `<registry>/<name>:<tag>` (or `<name>:<tag>`); an unbuilt `fromBase` image is its base reference (`ref@digest` once pinned). */
  get uri(): string {
    if (!this.needsBuild && this.spec.base.kind === "image") return baseReference(this.spec.base);
    const repository = this.spec.registry ? `${this.spec.registry}/${this.spec.name}` : this.spec.name;
    return `${repository}:${this.tag}`;
  }

  /** False only for `fromBase` images without layers. */
  get needsBuild(): boolean {
    return this.spec.base.kind === "dockerfile" || this.spec.layers.length > 0 || isRuntimeBase(this.spec.base);
  }

  /** The inputs behind the content tag, so a user can see why it changed. */
  explain(): TagExplanation {
    return explainTag(this.spec);
  }

  toJSON(): ImageJSON {
    return { kilnSpecVersion: KILN_SPEC_VERSION, ...copySpec(this.spec) };
  }

  toString(): string {
    return `Image(${this.spec.registry ? `${this.spec.registry}/` : ""}${this.spec.name})`;
  }

  private addLayer(field: string, layer: Layer): Image {
    if (!this.spec.extendable) {
      throw new ValidationError(field, this.spec.name, "this image does not accept further layers (extendable: false)", {
        hint: "use clone({ extendable: true }) if you really want to add layers",
      });
    }
    // Kiln's first instruction after a user's Dockerfile: it must be able to follow it (dockerfile.ts).
    if (this.spec.base.kind === "dockerfile" && this.spec.layers.length === 0) assertDockerfileAcceptsLayers(this.spec.base.dockerfileHostPath);
    const spec = copySpec(this.spec);
    spec.layers.push(layer);
    return new Image(spec);
  }
}

/** A base given as a reference, or as a Kiln image (nested; one that needs no build is just its reference). */
function imageBase(field: string, base: unknown): Extract<BaseSpec, { kind: "image" }> {
  if (!Image.isImage(base)) return { kind: "image", ref: validateImageReference(field, base) };
  const image = base instanceof Image ? base : Image.fromJSON((base as { toJSON(): unknown }).toJSON());
  if (!image.needsBuild) return { kind: "image", ref: image.uri };
  return { kind: "image", ref: image.uri, image: copySpec(image.spec) };
}

const IMAGE_MARKER = Symbol.for("kiln.image");
Object.defineProperty(Image.prototype, IMAGE_MARKER, { value: true });

/** `fromDebianBase`/`fromNodeBase` images are Kiln-made (a distinct URI under your name) even without layers. */
function isRuntimeBase(base: BaseSpec): boolean {
  return base.kind === "image" && (base.python !== undefined || base.node !== undefined);
}

// ---- helpers -----------------------------------------------------------------------------------

function common(ctor: string, o: CommonImageOptions): Pick<ImageSpec, "name" | "platform"> & { registry?: string } {
  if (typeof o !== "object" || o === null) throw new ValidationError(`${ctor} options`, o, "expected an options object");
  const out: Pick<ImageSpec, "name" | "platform"> & { registry?: string } = {
    name: "",
    platform: validatePlatforms("platform", o.platform ?? DEFAULT_PLATFORMS),
  };
  if (o.registry !== undefined) out.registry = validateRegistry("registry", o.registry);
  out.name = validateRepositoryName("name", o.name ?? DEFAULT_IMAGE_NAME, out.registry);
  return out;
}

/** A build arg value: recorded in the image history, so no credentials (with a Dockerfile-specific hint). */
function validateBuildArgValue(field: string, value: unknown): string {
  refuseCredentialUrls(field, value, "buildArg");
  return validateEnvValue(field, value);
}

function validatePinBase(value: unknown): boolean {
  if (typeof value !== "boolean") throw new ValidationError("pinBase", value, "expected true or false");
  return value;
}

/** `{ pin }` for a declared choice; nothing (the global setting) when none was given. */
function pinChoice(value: unknown): { pin?: boolean } {
  return value === undefined ? {} : { pin: validatePinBase(value) };
}

function validateBaseDigest(field: string, value: unknown): string {
  if (typeof value !== "string" || !/^sha256:[0-9a-f]{64}$/.test(value)) throw new ValidationError(field, value, "expected a digest sha256:<64 lowercase hex>");
  return value;
}

function validateInstaller(field: string, value: unknown): PythonInstaller {
  if (value !== "uv" && value !== "pip") throw new ValidationError(field, value, 'expected "uv" or "pip"');
  return value;
}

function nonEmptyList(field: string, values: unknown[]): unknown[] {
  if (values.length === 0) throw new ValidationError(field, values, "needs at least one value");
  return values;
}

function argList(field: string, values: unknown): string[] {
  if (!Array.isArray(values)) throw new ValidationError(field, values, "expected a list of strings");
  return values.map((v, i) => validateExtraArg(`${field}[${i}]`, v));
}

function recordEntries(field: string, record: unknown): Array<[string, unknown]> {
  if (typeof record !== "object" || record === null || Array.isArray(record)) {
    throw new ValidationError(field, record, "expected an object of string values");
  }
  const entries = Object.entries(record);
  if (entries.length === 0) throw new ValidationError(field, record, "needs at least one entry");
  return entries;
}

function commandSecrets(field: string, o: CommandOptions | undefined): SecretMount[] {
  if (o === undefined) return [];
  if (Array.isArray(o)) throw new ValidationError(`${field} options`, o, "expected { secrets }");
  rejectUnknownKeys(`${field} options`, o, ["secrets"]);
  return o.secrets === undefined ? [] : validateSecretMounts(`${field} secrets`, o.secrets);
}

function pipOptions(field: string, o: PipOptions | undefined): PipOptions {
  if (o === undefined) return {};
  if (typeof o !== "object" || o === null || Array.isArray(o)) throw new ValidationError(`${field} options`, o, "expected PipOptions");
  rejectUnknownKeys(`${field} options`, o, ["indexUrl", "extraIndexUrls", "pre", "extraArgs"]);
  const out: PipOptions = {};
  if (o.indexUrl !== undefined) out.indexUrl = validateIndexUrl(`${field} indexUrl`, o.indexUrl);
  if (o.extraIndexUrls !== undefined) {
    if (!Array.isArray(o.extraIndexUrls)) throw new ValidationError(`${field} extraIndexUrls`, o.extraIndexUrls, "expected a list of URLs");
    out.extraIndexUrls = o.extraIndexUrls.map((u, i) => validateIndexUrl(`${field} extraIndexUrls[${i}]`, u));
  }
  if (o.pre !== undefined) {
    if (typeof o.pre !== "boolean") throw new ValidationError(`${field} pre`, o.pre, "expected true or false");
    out.pre = o.pre;
  }
  if (o.extraArgs !== undefined) out.extraArgs = argList(`${field} extraArgs`, o.extraArgs);
  return out;
}

/** Resolves a user path (relative to the cwd, or a file: URL) to an absolute path that exists. */
export function resolveHostPath(field: string, input: unknown, kind: "file" | "directory"): string {
  let path: string;
  if (input instanceof URL) {
    if (input.protocol !== "file:") throw new ValidationError(field, input.href, "only file: URLs name local paths");
    path = fileURLToPath(input);
  } else {
    path = resolve(process.cwd(), requireString(field, input));
  }
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch {
    throw new SourceNotFoundError(`${field}: no such ${kind}: ${path}`, {
      hint: `relative paths are resolved against the current directory (${process.cwd()}); pass an absolute path or new URL("./x", import.meta.url)`,
      details: { field, path },
    });
  }
  if (isDir !== (kind === "directory")) {
    throw new ValidationError(field, path, `expected a ${kind}, found a ${isDir ? "directory" : "file"}`, {
      hint: kind === "directory" ? "use withSourceFile for a single file" : "use withSourceFolder for a directory",
    });
  }
  return path;
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function copySpec(spec: Readonly<ImageSpec>): ImageSpec {
  return structuredClone(spec) as ImageSpec;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

function parseJSONText(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ValidationError("image JSON", text, "is not valid JSON", { cause: error });
  }
}

// ---- JSON validation ---------------------------------------------------------------------------

type Obj = Record<string, unknown>;

function obj(field: string, v: unknown): Obj {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new ValidationError(field, v, "expected an object");
  return v as Obj;
}

function list(field: string, v: unknown): unknown[] {
  if (!Array.isArray(v)) throw new ValidationError(field, v, "expected an array");
  return v;
}

function absolutePath(field: string, v: unknown): string {
  const p = requireString(field, v);
  if (!p.startsWith("/") && !/^[A-Za-z]:[\\/]/.test(p)) throw new ValidationError(field, p, "expected an absolute host path");
  return p;
}

function pairs(field: string, v: unknown, key: (f: string, k: unknown) => string, value: (f: string, x: unknown) => string): Array<[string, string]> {
  return list(field, v).map((entry, i) => {
    const pair = list(`${field}[${i}]`, entry);
    if (pair.length !== 2) throw new ValidationError(`${field}[${i}]`, entry, "expected [key, value]");
    const k = key(`${field}[${i}] key`, pair[0]);
    return [k, value(`${field}[${i}] value`, pair[1])];
  });
}

function optionalPip(field: string, o: Obj): PipOptions {
  const picked: Obj = {};
  for (const key of ["indexUrl", "extraIndexUrls", "pre", "extraArgs"]) if (o[key] !== undefined) picked[key] = o[key];
  return pipOptions(field, picked as PipOptions);
}

/** Compiles each pattern as withDockerignore does, so a malformed one fails at load, naming its index. */
function compileIgnorePatterns(field: string, patterns: string[]): void {
  patterns.forEach((pattern, i) => {
    try {
      new IgnoreMatcher([pattern]);
    } catch (error) {
      if (!ValidationError.isInstance(error)) throw error;
      const prefix = `Invalid ${error.field} ${describeValue(error.value)}: `;
      const reason = error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message;
      throw new ValidationError(`${field}[${i}]`, pattern, reason, error.hint === undefined ? {} : { hint: error.hint });
    }
  });
}

function parseLayer(field: string, raw: unknown): Layer {
  const o = obj(field, raw);
  switch (o.kind) {
    case "aptPackages":
      return {
        kind: "aptPackages",
        packages: nonEmptyList(field, list(`${field}.packages`, o.packages)).map((p, i) => validateAptPackage(`${field}.packages[${i}]`, p)),
      };
    case "pipPackages":
      return {
        kind: "pipPackages",
        packages: nonEmptyList(field, list(`${field}.packages`, o.packages)).map((p, i) => validatePipRequirement(`${field}.packages[${i}]`, p)),
        ...optionalPip(field, o),
      };
    case "requirements":
      return {
        kind: "requirements",
        hostPath: absolutePath(`${field}.hostPath`, o.hostPath),
        name: validateContextFileName(`${field}.name`, o.name),
        ...optionalPip(field, o),
      };
    case "commands": {
      const layer: Layer = {
        kind: "commands",
        commands: nonEmptyList(field, list(`${field}.commands`, o.commands)).map((c, i) => validateCommand(`${field}.commands[${i}]`, c)),
      };
      const secrets = o.secrets === undefined ? [] : validateSecretMounts(`${field}.secrets`, o.secrets);
      if (secrets.length > 0) layer.secrets = secrets;
      return layer;
    }
    case "env":
      return { kind: "env", vars: pairs(`${field}.vars`, o.vars, validateEnvKey, validateEnvValue) };
    case "workdir":
      return { kind: "workdir", path: validateContainerPath(`${field}.path`, o.path) };
    case "sourceFolder":
      return { kind: o.kind, hostPath: absolutePath(`${field}.hostPath`, o.hostPath), dest: validateContainerPath(`${field}.dest`, o.dest) };
    case "sourceFile": {
      const hostPath = absolutePath(`${field}.hostPath`, o.hostPath);
      // As in withSourceFile: the basename becomes a COPY source, where `*`, `?` and `[` are globs.
      validateContextFileName(`${field}.hostPath file name`, hostPath.split(/[\\/]/).pop());
      return { kind: o.kind, hostPath, dest: validateContainerPath(`${field}.dest`, o.dest) };
    }
    case "dockerIgnore": {
      const patterns = list(`${field}.patterns`, o.patterns).map((p, i) => requireString(`${field}.patterns[${i}]`, p));
      compileIgnorePatterns(`${field}.patterns`, patterns);
      return { kind: "dockerIgnore", hostPath: absolutePath(`${field}.hostPath`, o.hostPath), patterns };
    }
    case "uvProject": {
      const layer: Layer = {
        kind: "uvProject",
        pyprojectHostPath: absolutePath(`${field}.pyprojectHostPath`, o.pyprojectHostPath),
        lockHostPath: absolutePath(`${field}.lockHostPath`, o.lockHostPath),
      };
      if (o.extraArgs !== undefined) layer.extraArgs = argList(`${field}.extraArgs`, o.extraArgs);
      return layer;
    }
    case "nodeProject": {
      const manager = o.manager;
      if (manager !== "npm" && manager !== "pnpm") throw new ValidationError(`${field}.manager`, manager, 'expected "npm" or "pnpm"');
      const lockfile = requireString(`${field}.lockfile`, o.lockfile);
      if (!LOCKFILES[manager].includes(lockfile)) throw new ValidationError(`${field}.lockfile`, lockfile, `is not a ${manager} lockfile`);
      return {
        kind: "nodeProject",
        hostPath: absolutePath(`${field}.hostPath`, o.hostPath),
        dest: validateContainerPath(`${field}.dest`, o.dest),
        manager,
        lockfile,
      };
    }
    case "labels":
      return { kind: "labels", labels: pairs(`${field}.labels`, o.labels, validateLabelKey, validateLabelValue) };
    case "user":
      return { kind: "user", user: validateUser(`${field}.user`, o.user) };
    default:
      throw new ValidationError(`${field}.kind`, o.kind, "unknown layer kind");
  }
}

function parseBase(raw: unknown, ancestors: readonly Obj[]): BaseSpec {
  const o = obj("base", raw);
  if (o.kind === "image") {
    const base: BaseSpec = { kind: "image", ref: validateImageReference("base.ref", o.ref) };
    if (o.python !== undefined) base.python = validatePythonVersion("base.python", o.python);
    if (o.node !== undefined) base.node = validateNodeVersion("base.node", o.node);
    if (o.pin !== undefined) base.pin = validatePinBase(o.pin);
    if (o.digest !== undefined) base.digest = validateBaseDigest("base.digest", o.digest);
    if (o.image !== undefined) base.image = parseNestedBase(obj("base.image", o.image), ancestors);
    return base;
  }
  if (o.kind === "dockerfile") {
    const base: BaseSpec = {
      kind: "dockerfile",
      dockerfileHostPath: absolutePath("base.dockerfileHostPath", o.dockerfileHostPath),
      contextHostPath: absolutePath("base.contextHostPath", o.contextHostPath),
      buildArgs: pairs("base.buildArgs", o.buildArgs, validateEnvKey, validateBuildArgValue),
    };
    if (o.target !== undefined) base.target = validateStageName("base.target", o.target);
    const secrets = dockerfileSecrets("base.secrets", o.secrets);
    if (secrets !== undefined) base.secrets = secrets;
    return base;
  }
  throw new ValidationError("base.kind", o.kind, 'expected "image" or "dockerfile"');
}

/** A Dockerfile's secret ids: validated, each once; none (or an empty list) is no field at all. */
function dockerfileSecrets(field: string, value: unknown): string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) {
    throw new ValidationError(field, value, "expected a list of secret ids", { hint: 'e.g. { secrets: ["NPM_TOKEN"] }' });
  }
  const ids = value.map((id, i) => validateSecretId(`${field}[${i}]`, id));
  const unique = [...new Set(ids)];
  if (unique.length !== ids.length) {
    throw new ValidationError(field, ids.join(","), "lists an id twice", { hint: "name each secret once" });
  }
  return unique.length > 0 ? unique : undefined;
}

function parseImageJSON(raw: unknown): ImageSpec {
  const o = obj("image JSON", raw);
  if (o.kilnSpecVersion !== KILN_SPEC_VERSION) {
    throw new ValidationError("kilnSpecVersion", o.kilnSpecVersion, `expected ${KILN_SPEC_VERSION}`, {
      hint: "the spec was written by an incompatible version of Kiln; upgrade @kiln/core on both sides",
    });
  }
  const spec = parseSpecBody(o, []);
  checkBasePlatforms(spec);
  return spec;
}

/**
 * A nested base image (`base.image`, the spec of a Kiln image this one is built on). A JSON text is a
 * tree, but an object handed to fromJSON may point back at an image above it: that cycle is a
 * ValidationError naming both images (and the chain is kept shallow enough to walk without risk).
 */
function parseNestedBase(o: Obj, ancestors: readonly Obj[]): ImageSpec {
  const at = ancestors.indexOf(o);
  if (at >= 0) {
    const chain = [...ancestors.slice(at), o].map((a) => describeRaw(a));
    throw new ValidationError(
      "base.image",
      chain.join(" -> "),
      `is a cycle: ${describeRaw(ancestors[ancestors.length - 1]!)} is based on ${describeRaw(o)}, which is itself built on it`,
      {
        hint: "an image cannot be (directly or through other images) its own base",
        details: { image: describeRaw(ancestors[ancestors.length - 1]!), base: describeRaw(o), chain },
      },
    );
  }
  if (ancestors.length >= MAX_CHAIN_DEPTH) {
    throw new ValidationError("base.image", describeRaw(o), `nests more than ${MAX_CHAIN_DEPTH} Kiln images`, {
      hint: "a chain of base images this deep is almost certainly a mistake",
    });
  }
  return parseSpecBody(o, ancestors);
}

function describeRaw(o: Obj): string {
  const name = typeof o.name === "string" ? o.name : "?";
  return typeof o.registry === "string" ? `${o.registry}/${name}` : name;
}

function parseSpecBody(o: Obj, outer: readonly Obj[]): ImageSpec {
  const base = parseBase(o.base, [...outer, o]);
  const layers = list("layers", o.layers).map((l, i) => parseLayer(`layers[${i}]`, l));
  // The copied manifests as the with* methods check them, where this machine can read them.
  layers.forEach((layer, i) => refuseCredentialsInLayerFiles(`layers[${i}]`, layer, layers.slice(0, i), { missingOk: true }));
  const spec: ImageSpec = {
    base,
    layers,
    name: "",
    platform: validatePlatforms("platform", o.platform),
    installer: validateInstaller("installer", o.installer),
    uvImage: validateImageReference("uvImage", o.uvImage),
    extendable: true,
  };
  if (o.registry !== undefined) spec.registry = validateRegistry("registry", o.registry);
  spec.name = validateRepositoryName("name", o.name, spec.registry);
  if (o.tag !== undefined) spec.tag = validateTag("tag", o.tag);
  if (o.uvDigest !== undefined) {
    // As withUvDigest: a uv reference naming its own digest keeps it, so the tag and COPY --from agree.
    const uvDigest = validateBaseDigest("uvDigest", o.uvDigest);
    const own = parseReference(spec.uvImage).digest;
    if (own !== undefined && own !== uvDigest)
      throw new ValidationError("uvDigest", uvDigest, `the uv image reference ${spec.uvImage} already names another digest`);
    if (own === undefined) spec.uvDigest = uvDigest;
  }
  if (typeof o.extendable !== "boolean") throw new ValidationError("extendable", o.extendable, "expected true or false");
  spec.extendable = o.extendable;
  return spec;
}
