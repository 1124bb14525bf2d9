/**
 * `renderDockerfile(image, { buildkit })`: the one Dockerfile every builder uses.
 *
 * Ordering rule (for cache reuse without changing what the user meant):
 * 1. `FROM <base>` (`FROM <base>@<digest>` when pinBase pinned it), then (when a layer needs uv) `COPY --from=<uvImage> /uv /uvx /usr/local/bin/`
 *    (`<uvImage>@<digest>` when pinBase pinned it).
 * 2. The layers are split into segments at "barrier" layers — commands, env, workdir, user — which stay
 *    exactly where they were declared (a command may need earlier packages or sources; env, workdir and
 *    user change what later steps mean). A copy into a configuration location (see `copyPhase`) also
 *    stays in place relative to installs (an install may read an apt source list, pip.conf or .npmrc
 *    copied before it); only source copies may move past it. Inside a segment Kiln renders, in
 *    declared order within each group: apt packages, then each dependency install with its manifest
 *    copied just before it (requirements file, pyproject + uv.lock, package.json + lockfile), then the
 *    source copies (source folders, source files, node project sources). So editing sources never
 *    invalidates installs.
 * 3. Labels last (metadata; changing one rebuilds nothing else).
 *
 * Safety: RUN always uses the JSON exec form (user values are argv elements or `$@` positional
 * parameters, never spliced into a script); words Docker substitutes in are escaped (quote.ts).
 * No `# syntax=` line is ever written: it would pull a frontend image from Docker Hub.
 *
 * Users: after a `user` layer, COPY gets `--chown=<user>` (the declared user, which must exist for its
 * USER to work at all), and apt and Python installs (pip, uv, uv projects — they write the system
 * site-packages) switch to root and back. Node project installs run as the declared user (so it owns
 * node_modules) with `corepack enable` as root, and without cache mounts (see the nodeProject case).
 * Kiln emits no WORKDIR or USER but declared ones and these switches, so a base image's own working
 * directory and user are kept.
 *
 * The build context layout this assumes (context.ts streams it): files of layer `i` live under
 * `contextDirForLayer(i)`: a source folder's contents at `kiln-layers/i/`, a source file or requirements
 * file at `kiln-layers/i/<basename>`, a uv project as `kiln-layers/i/pyproject.toml` + `kiln-layers/i/uv.lock`,
 * a node project's (filtered) contents at `kiln-layers/i/` including its package.json and lockfile.
 *
 * `fromDockerfile` images: the user's Dockerfile as is; with layers, Kiln's instructions are appended to
 * its last stage, or, with `target`, to a new stage `FROM <target> AS kiln-final` (see `dockerBuildTarget`).
 * Appended, they must stay instructions of their own and the Dockerfile must keep its meaning alone
 * (what @kiln/docker's incremental build runs as stage 0): `closeDockerfile` (dockerfileSyntax.ts) ends
 * an instruction left open at end of file (a trailing line continuation) and refuses what cannot be
 * ended (an unterminated heredoc), and Kiln's words are escaped with the file's `# escape=` character.
 *
 * Build secrets (`withCommands(..., { secrets })`) become `RUN --mount=type=secret,id=…,required=true`
 * on each command of their layer; with `buildkit: false` such an image is a BuildSecretsNeedBuildKitError.
 *
 * `planDockerfile` exposes the same rendering as an ordered list of steps, each with the context files
 * it copies, so a builder can split the build into stages (incremental builds); `renderDockerfile` is
 * exactly the plan's lines joined.
 */
import { closeSync, constants, fstatSync, openSync, readFileSync } from "node:fs";
import { baseReference, uvImageReference } from "./pinnedReference.js";
import { BuildSecretsNeedBuildKitError, SourceNotFoundError, ValidationError } from "./errors.js";
import { specOf } from "./hash.js";
import type { Image } from "./image.js";
import { closeDockerfile } from "./dockerfileSyntax.js";
import { contextDirForLayer, type ImageSpec, type Layer, type PipOptions, type SecretMount } from "./layers.js";
import { doubleQuote, escapeWord, jsonArray, type EscapeChar } from "./quote.js";

export interface RenderOptions {
  /** Use BuildKit cache mounts (`RUN --mount=type=cache`). Default true; false renders plain RUN steps
   * (and throws BuildSecretsNeedBuildKitError for an image that mounts build secrets). */
  buildkit?: boolean;
}

/** The stage Kiln appends when a `fromDockerfile` image with a `target` gets more layers. */
export const KILN_FINAL_STAGE = "kiln-final";

/** Where requirements files are copied inside the image. */
export function requirementsPathInImage(index: number, name: string): string {
  return `/opt/kiln/requirements/${index}/${name}`;
}

const APT_CACHE_MOUNTS = ["--mount=type=cache,target=/var/cache/apt,sharing=locked", "--mount=type=cache,target=/var/lib/apt/lists,sharing=locked"];
const PIP_CACHE_MOUNT = "--mount=type=cache,target=/root/.cache/pip";
const UV_CACHE_MOUNT = "--mount=type=cache,target=/root/.cache/uv";
const NPM_CACHE_MOUNT = "--mount=type=cache,target=/root/.npm";
const PNPM_STORE = "/root/.local/share/pnpm/store";
const PNPM_CACHE_MOUNT = `--mount=type=cache,target=${PNPM_STORE}`;
/** Longest line Docker's Dockerfile scanner reads comfortably (its buffer is 64 KiB). */
const MAX_LINE_BYTES = 60_000;

/** Context files one step copies: names inside `contextDirForLayer(layerIndex)`, or the whole folder. */
export interface ContextFiles {
  layerIndex: number;
  /** File names inside the layer's context folder; absent: everything in the folder. */
  names?: string[];
}

/** One step of the rendered Dockerfile: consecutive instructions that belong together. */
export interface DockerfileStep {
  /** The instructions, one per line, exactly as `renderDockerfile` writes them. */
  lines: string[];
  /** The context files these instructions copy (empty for steps that read no context). */
  consumes: ContextFiles[];
  /** The declared user in effect when the step starts (undefined: the base image's). Its COPYs chown to it. */
  user?: string;
  /** The declared working directory in effect when the step starts (undefined: the base image's). */
  workdir?: string;
}

export interface DockerfilePlan {
  /** What comes before Kiln's steps: `FROM <base>`, or the user's Dockerfile (and the kiln-final stage). */
  preamble: string[];
  /** Kiln's steps in build order (labels last). */
  steps: DockerfileStep[];
  /** The base image of a Kiln-rendered image (`FROM` of the preamble); undefined for fromDockerfile. */
  baseRef?: string;
}

type Phase = "apt" | "install" | "source" | "config" | "barrier" | "label";
interface Part {
  phase: Phase;
  lines: string[];
  consumes?: ContextFiles[];
  /** For copies: the destination, resolved against the declared workdir when relative (else as given). */
  dest?: string;
}
interface Ctx {
  buildkit: boolean;
  spec: Readonly<ImageSpec>;
  /** The user declared by the latest `user` layer, if any. */
  user: string | undefined;
  /** The path of the latest `workdir` layer, if any. */
  workdir: string | undefined;
  /** The Dockerfile's escape character: Kiln's words are escaped with it. */
  escape: EscapeChar;
}

export function renderDockerfile(image: Image | Readonly<ImageSpec>, { buildkit = true }: RenderOptions = {}): string {
  const spec = specOf(image);
  if (!buildkit) assertNoSecrets(spec);
  // A Dockerfile image without layers is sent exactly as the user wrote it.
  if (spec.base.kind === "dockerfile" && spec.layers.length === 0) return readDockerfile(spec.base.dockerfileHostPath);
  const plan = planDockerfile(spec, { buildkit });
  return joinLines([...plan.preamble, ...plan.steps.flatMap((step) => step.lines)]);
}

/**
 * The rendering as ordered steps (see the module comment for the order). Joining the preamble and every
 * step's lines gives `renderDockerfile`'s text; a builder may instead build a prefix of the steps
 * `FROM` an image that already holds the steps before it (the state a step depends on — the declared
 * user and working directory — lives in that image's config, and the chown decisions are already made).
 */
export function planDockerfile(image: Image | Readonly<ImageSpec>, { buildkit = true }: RenderOptions = {}): DockerfilePlan {
  const spec = specOf(image);
  if (!buildkit) assertNoSecrets(spec);
  const preamble: string[] = [];
  let baseRef: string | undefined;
  let escape: EscapeChar = "\\";
  if (spec.base.kind === "dockerfile") {
    const own = readDockerfile(spec.base.dockerfileHostPath);
    if (spec.layers.length === 0) return { preamble: [own.replace(/\s*$/, "")], steps: [] };
    const closed = closeDockerfile(own, spec.base.dockerfileHostPath);
    preamble.push(closed.text);
    escape = closed.escape;
    if (spec.base.target !== undefined) preamble.push(`FROM ${spec.base.target} AS ${KILN_FINAL_STAGE}`);
  } else {
    // A pinned base (pinBase.ts) is read by its digest: `FROM ref@sha256:…`.
    baseRef = baseReference(spec.base);
    preamble.push(`FROM ${baseRef}`);
  }
  const steps: DockerfileStep[] = [];
  // A pinned uv image (pinBase.ts) is read by its digest, as the base is.
  if (usesUvImage(spec)) steps.push({ lines: [`COPY --from=${uvImageReference(spec)} /uv /uvx /usr/local/bin/`], consumes: [] });
  steps.push(...planLayers(spec, buildkit, escape));
  for (const step of steps) assertLineLengths(step.lines);
  return baseRef === undefined ? { preamble, steps } : { preamble, steps, baseRef };
}

/** Build secrets are BuildKit mounts; the classic builder has no way to provide them (and silently
 * dropping the mount would run the command without its credentials). */
function assertNoSecrets(spec: Readonly<ImageSpec>): void {
  if (spec.base.kind === "dockerfile" && spec.base.secrets !== undefined && spec.base.secrets.length > 0) {
    throw new BuildSecretsNeedBuildKitError(`The Dockerfile's build secrets (${spec.base.secrets.join(", ")}) need BuildKit`, {
      hint: "build with BuildKit (the default); the classic builder cannot mount secrets",
      details: { secrets: spec.base.secrets },
    });
  }
  spec.layers.forEach((layer, index) => {
    if (layer.kind === "commands" && layer.secrets !== undefined && layer.secrets.length > 0) {
      const ids = layer.secrets.map((s) => s.id).join(", ");
      throw new BuildSecretsNeedBuildKitError(`layers[${index}] mounts build secrets (${ids}), which needs BuildKit`, {
        hint: "build with BuildKit (the default); the classic builder cannot mount secrets",
        details: { layer: index, secrets: layer.secrets.map((s) => s.id) },
      });
    }
  });
}

/** `--mount=type=secret,id=<id>,required=true[,target=<path>]`. Ids and targets are validated at
 * declaration to characters that cannot end the flag or its CSV fields (validateSecretMounts). */
/** BuildKit mounts a secret root-owned, mode 0400, so a step run as a non-root user (a `withUser`, or
 * the base image's own USER, which Kiln cannot see) could not read it: it is mounted 0444 — readable
 * only inside that one RUN's container, never in a layer. */
function secretMount(secret: SecretMount): string {
  const target = secret.target === undefined ? "" : `,target=${secret.target}`;
  return `--mount=type=secret,id=${secret.id},required=true${target},mode=0444`;
}

/** Dockerfile text from instruction lines (one trailing newline); refuses lines Docker cannot read. */
function joinLines(lines: string[]): string {
  const text = `${lines.join("\n")}\n`;
  assertLineLengths(text.split("\n"));
  return text;
}

function assertLineLengths(lines: readonly string[]): void {
  for (const line of lines) {
    if (Buffer.byteLength(line) > MAX_LINE_BYTES) {
      throw new ValidationError("Dockerfile instruction", `${line.slice(0, 60)}...`, `is longer than ${MAX_LINE_BYTES} bytes`, {
        hint: "split long package lists or commands over several with* calls",
      });
    }
  }
}

/** The `--target` a builder should pass for this image (undefined: build the last stage). */
export function dockerBuildTarget(image: Image | Readonly<ImageSpec>): string | undefined {
  const spec = specOf(image);
  if (spec.base.kind !== "dockerfile" || spec.base.target === undefined) return undefined;
  return spec.layers.length === 0 ? spec.base.target : KILN_FINAL_STAGE;
}

/** True when the rendered Dockerfile copies uv from `uvImage` (a uv project, or pip layers installed with uv). */
export function usesUvImage(image: Image | Readonly<ImageSpec>): boolean {
  const spec = specOf(image);
  return spec.layers.some(
    (layer: Layer) => layer.kind === "uvProject" || (spec.installer === "uv" && (layer.kind === "pipPackages" || layer.kind === "requirements")),
  );
}

function planLayers(spec: Readonly<ImageSpec>, buildkit: boolean, escape: EscapeChar): DockerfileStep[] {
  const out: DockerfileStep[] = [];
  const labels: DockerfileStep[] = [];
  const ctx: Ctx = { buildkit, spec, user: undefined, workdir: undefined, escape };
  let segment: DockerfileStep[][] = [[], [], []]; // apt, install, source
  let sourceDests: Array<string | undefined> = []; // beside segment[2]
  const flush = () => {
    for (const steps of segment) out.push(...steps);
    segment = [[], [], []];
    sourceDests = [];
  };
  spec.layers.forEach((layer, index) => {
    for (const part of renderLayer(layer, index, ctx)) {
      const step: DockerfileStep = { lines: part.lines, consumes: part.consumes ?? [] };
      if (ctx.user !== undefined) step.user = ctx.user;
      if (ctx.workdir !== undefined) step.workdir = ctx.workdir;
      if (part.phase === "label") labels.push(step);
      else if (part.phase === "barrier") {
        flush();
        out.push(step);
      } else if (part.phase === "config") {
        // Installs declared before it stay before it. Pending sources may move past it, except those
        // (and every one declared before them, to keep their order) whose destination overlaps it:
        // a folder copied to /app must not land on top of an /app/.env declared after it.
        const lastOverlap = sourceDests.findLastIndex((dest) => destinationsOverlap(dest, part.dest));
        out.push(...segment[0]!, ...segment[1]!, ...segment[2]!.slice(0, lastOverlap + 1), step);
        segment = [[], [], segment[2]!.slice(lastOverlap + 1)];
        sourceDests = sourceDests.slice(lastOverlap + 1);
      } else {
        segment[part.phase === "apt" ? 0 : part.phase === "install" ? 1 : 2]!.push(step);
        if (part.phase === "source") sourceDests.push(part.dest);
      }
    }
    if (layer.kind === "user") ctx.user = layer.user;
    if (layer.kind === "workdir") ctx.workdir = layer.path;
  });
  flush();
  return [...out, ...labels];
}

function isRoot(user: string | undefined): boolean {
  return user === undefined || /^(root|0)(:.*)?$/.test(user);
}

function copy(ctx: Ctx, sources: string[], dest: string): string {
  const chown = isRoot(ctx.user) ? "" : `--chown=${ctx.user} `;
  return `COPY ${chown}${jsonArray([...sources, dest].map((word) => escapeWord(word, ctx.escape)))}`;
}

/** Installers that write system locations (apt, pip/uv into the system site-packages) need root: after a
 * non-root `user` layer the step switches to root and back. */
function asRoot(ctx: Ctx, lines: string[]): string[] {
  return isRoot(ctx.user) ? lines : ["USER root", ...lines, `USER ${ctx.user}`];
}

function run(mounts: string[], argv: string[]): string {
  return ["RUN", ...mounts, jsonArray(argv)].join(" ");
}

/** `/bin/sh -c <constant script> sh <args...>`: the script reads user values only as "$@" / "$1". */
function sh(script: string, args: string[]): string[] {
  return ["/bin/sh", "-c", script, "sh", ...args];
}

/**
 * Application sources move after the installs of their segment; a copy into a configuration location
 * stays where it was declared, because an install may read it: apt sources and keyrings
 * (/etc/apt, /usr/share/keyrings), pip.conf, CA certificates (/usr/local/share/ca-certificates),
 * ~/.npmrc, ~/.config/uv. That is any destination under CONFIG_ROOTS, or with a dot-named segment.
 */
function copyPhase(ctx: Ctx, dest: string): Phase {
  const resolved = resolveDest(ctx, dest);
  // Unknown (a relative path leaving the unknown workdir): judged on the path as written.
  const path = resolved ?? dest;
  const segments = path.split("/").filter((s) => s !== "" && s !== "." && s !== "..");
  const configRoot = path.startsWith("/") && CONFIG_ROOTS.some((root) => path === root || path.startsWith(`${root}/`));
  return configRoot || segments.some((s) => s.startsWith(".")) ? "config" : "source";
}

/** Where installs read configuration from (app directories such as /usr/src/app are not among them). */
const CONFIG_ROOTS = ["/etc", "/root", "/usr/local/etc", "/usr/share/keyrings", "/usr/local/share/ca-certificates"];

/** A copy destination, normalised: absolute when it is or the declared workdir makes it so; relative
 * to the (unknown) base workdir otherwise; undefined when a relative path climbs out of it with `..`. */
function resolveDest(ctx: Ctx, dest: string): string | undefined {
  const joined = dest.startsWith("/") ? dest : ctx.workdir !== undefined ? `${ctx.workdir}/${dest}` : dest;
  const absolute = joined.startsWith("/");
  const parts: string[] = [];
  for (const segment of joined.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment !== "..") parts.push(segment);
    else if (parts.length > 0) parts.pop();
    else if (!absolute) return undefined; // `/..` is `/`, but `../x` depends on a workdir Kiln does not know
  }
  return absolute ? `/${parts.join("/")}` : parts.join("/");
}

/** True when one destination contains the other; unknown, or relative beside absolute (the base
 * image's workdir is not known here), counts as overlapping. */
function destinationsOverlap(a: string | undefined, b: string | undefined): boolean {
  if (a === undefined || b === undefined || a.startsWith("/") !== b.startsWith("/")) return true;
  const inside = (x: string, y: string) => y === "" || y === "/" || x === y || x.startsWith(y.endsWith("/") ? y : `${y}/`);
  return inside(a, b) || inside(b, a);
}

function asDir(dest: string): string {
  return dest.endsWith("/") ? dest : `${dest}/`;
}

function renderLayer(layer: Layer, index: number, ctx: Ctx): Part[] {
  const dir = contextDirForLayer(index);
  const { buildkit } = ctx;
  switch (layer.kind) {
    case "aptPackages": {
      const install = 'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -- "$@"';
      const lines = buildkit
        ? [
            run(
              APT_CACHE_MOUNTS,
              sh(
                "rm -f /etc/apt/apt.conf.d/docker-clean && echo 'Binary::apt::APT::Keep-Downloaded-Packages \"true\";' > /etc/apt/apt.conf.d/keep-cache && " +
                  install,
                layer.packages,
              ),
            ),
          ]
        : [run([], sh(`${install} && rm -rf /var/lib/apt/lists/*`, layer.packages))];
      return [{ phase: "apt", lines: asRoot(ctx, lines) }];
    }
    case "pipPackages":
      return [{ phase: "install", lines: asRoot(ctx, [pythonInstall(ctx, layer, ["--", ...layer.packages])]) }];
    case "requirements": {
      const target = requirementsPathInImage(index, layer.name);
      return [
        {
          phase: "install",
          lines: [copy(ctx, [`${dir}/${layer.name}`], target), ...asRoot(ctx, [pythonInstall(ctx, layer, ["-r", target])])],
          consumes: [{ layerIndex: index, names: [layer.name] }],
        },
      ];
    }
    case "uvProject": {
      const noCache = buildkit ? [] : ["--no-cache"];
      const script = 'UV_PROJECT_ENVIRONMENT="$(python3 -c \'import sys; print(sys.prefix)\')" exec uv sync --frozen --no-install-project "$@"';
      return [
        {
          phase: "install",
          lines: [
            copy(ctx, [`${dir}/pyproject.toml`, `${dir}/uv.lock`], "./"),
            ...asRoot(ctx, [run(buildkit ? [UV_CACHE_MOUNT] : [], sh(script, [...noCache, ...(layer.extraArgs ?? [])]))]),
          ],
          consumes: [{ layerIndex: index, names: ["pyproject.toml", "uv.lock"] }],
        },
      ];
    }
    case "nodeProject": {
      // The install runs as the declared user (node_modules belongs to the user who runs the app, the
      // usual `USER node` pattern); only `corepack enable`, which writes shims into Node's prefix, needs root.
      // A non-root install gets no cache mount: BuildKit creates the mount's directory root-owned 0755,
      // `mode=` is cut by the umask on Docker's builder (moby/moby#47415) and `uid=` takes only a number,
      // while the user may be a name. Its caches go to the user's HOME and are cleaned in the same step.
      const dest = asDir(layer.dest);
      const cached = buildkit && isRoot(ctx.user);
      let install: string[];
      if (layer.manager === "pnpm") {
        const pnpmInstall = cached
          ? `cd "$1" && pnpm install --frozen-lockfile --store-dir ${PNPM_STORE}`
          : 'cd "$1" && pnpm install --frozen-lockfile && pnpm store prune';
        install = isRoot(ctx.user)
          ? [run(cached ? [PNPM_CACHE_MOUNT] : [], sh(`corepack enable && ${pnpmInstall}`, [dest]))]
          : [...asRoot(ctx, [run([], ["corepack", "enable"])]), run([], sh(pnpmInstall, [dest]))];
      } else {
        install = [run(cached ? [NPM_CACHE_MOUNT] : [], sh(cached ? 'cd "$1" && npm ci' : 'cd "$1" && npm ci && npm cache clean --force', [dest]))];
      }
      return [
        {
          phase: "install",
          lines: [copy(ctx, [`${dir}/package.json`, `${dir}/${layer.lockfile}`], dest), ...install],
          consumes: [{ layerIndex: index, names: ["package.json", layer.lockfile] }],
        },
        { phase: "source", lines: [copy(ctx, [`${dir}/`], dest)], consumes: [{ layerIndex: index }], dest: resolveDest(ctx, dest) },
      ];
    }
    case "sourceFolder":
      return [
        {
          phase: copyPhase(ctx, layer.dest),
          lines: [copy(ctx, [`${dir}/`], layer.dest)],
          consumes: [{ layerIndex: index }],
          dest: resolveDest(ctx, layer.dest),
        },
      ];
    case "sourceFile": {
      const name = layer.hostPath.split(/[\\/]/).pop()!;
      return [
        {
          phase: copyPhase(ctx, layer.dest),
          lines: [copy(ctx, [`${dir}/${name}`], layer.dest)],
          consumes: [{ layerIndex: index, names: [name] }],
          dest: resolveDest(ctx, layer.dest),
        },
      ];
    }
    case "dockerIgnore":
      return []; // applied by the build context, not an instruction
    case "commands": {
      const mounts = (layer.secrets ?? []).map(secretMount);
      return [{ phase: "barrier", lines: layer.commands.map((c) => run(mounts, ["/bin/sh", "-c", c])) }];
    }
    case "env":
      return [{ phase: "barrier", lines: [`ENV ${layer.vars.map(([k, v]) => `${k}=${doubleQuote(v, ctx.escape)}`).join(" ")}`] }];
    case "workdir":
      return [{ phase: "barrier", lines: [`WORKDIR ${doubleQuote(layer.path, ctx.escape)}`] }];
    case "user":
      return [{ phase: "barrier", lines: [`USER ${layer.user}`] }];
    case "labels":
      return [{ phase: "label", lines: [`LABEL ${layer.labels.map(([k, v]) => `${k}=${doubleQuote(v, ctx.escape)}`).join(" ")}`] }];
    default: {
      const never: never = layer;
      throw new ValidationError("layer", never, "unknown layer kind");
    }
  }
}

/** uv (`uv pip install --system`) or pip (`python3 -m pip install`), options as argv elements. */
function pythonInstall(ctx: Ctx, o: PipOptions, tail: string[]): string {
  const opts: string[] = [];
  if (o.indexUrl !== undefined) opts.push("--index-url", o.indexUrl);
  for (const url of o.extraIndexUrls ?? []) opts.push("--extra-index-url", url);
  if (ctx.spec.installer === "uv") {
    if (o.pre) opts.push("--prerelease=allow");
    const cache = ctx.buildkit ? ["--link-mode=copy"] : ["--no-cache"];
    return run(ctx.buildkit ? [UV_CACHE_MOUNT] : [], ["uv", "pip", "install", "--system", ...cache, ...opts, ...(o.extraArgs ?? []), ...tail]);
  }
  if (o.pre) opts.push("--pre");
  const cache = ctx.buildkit ? [] : ["--no-cache-dir"];
  return run(ctx.buildkit ? [PIP_CACHE_MOUNT] : [], [
    "python3",
    "-m",
    "pip",
    "install",
    "--disable-pip-version-check",
    ...cache,
    ...opts,
    ...(o.extraArgs ?? []),
    ...tail,
  ]);
}

/** At declaration of a `fromDockerfile` image's first layer: Kiln's instructions can follow the
 * Dockerfile (checked again when rendering, the file may change in between). */
export function assertDockerfileAcceptsLayers(path: string): void {
  closeDockerfile(readDockerfile(path), path);
}

function readDockerfile(path: string): string {
  let fd: number | undefined;
  try {
    // Non-blocking: a FIFO put in the Dockerfile's place must fail, not hang the build.
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    if (!fstatSync(fd).isFile()) {
      throw new SourceNotFoundError(`fromDockerfile: the Dockerfile ${path} is not a regular file`, {
        hint: "point fromDockerfile at a regular file (a symlink to one is fine)",
        details: { field: "fromDockerfile file", path },
      });
    }
    return readFileSync(fd, "utf8");
  } catch (error) {
    if (SourceNotFoundError.isInstance(error)) throw error;
    throw new SourceNotFoundError(`fromDockerfile: cannot read the Dockerfile ${path}`, {
      cause: error,
      hint: "the Dockerfile must still exist when the image is rendered and built",
      details: { field: "fromDockerfile file", path },
    });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
