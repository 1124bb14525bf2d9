/**
 * Which builder and which default registry an engine call uses.
 *
 * Builder:  build({ builder }) > init({ imageBuilder }) > KILN_IMAGE_BUILDER > config file
 *           (kiln.config.json, then package.json "kiln") > the only installed builder > with an
 *           image to build: the first installed builder, in BUILDER_PREFERENCE order (`oci` before
 *           `docker`, then the others by name), whose `canBuild` accepts it > "docker".
 * Registry: init({ imageRegistry }) > KILN_IMAGE_REGISTRY > config file.
 * Strict:   build({ strict }) > init({ strict }) > KILN_STRICT (1/true/0/false) > config file.
 * Checkers: build({ checkers }) > init({ imageCheckers }) > KILN_IMAGE_CHECKERS > config file >
 *           the builder's own getCheckers() (checkerSelection.ts).
 * Lock provider / check cache: build({ lockProvider / checkCache }) > init(…) > KILN_LOCK_PROVIDER /
 *           KILN_CHECK_CACHE > config file > "file" (per-host lock) / "none" (coordination/select.ts).
 * Pin base: an image's own pinBase > build({ pinBase }) > init({ pinBase }) > KILN_PIN_BASE >
 *           config file > off (pinBase.ts).
 * Promotion sources: build({ promoteFrom }) > init({ promoteFrom }) > KILN_PROMOTE_FROM > config
 *           file > none (promotion/select.ts).
 *
 * Builder names are looked up first among builders registered in this process
 * (`registerImageBuilder`), then among the plugins discovered from the project's package.json.
 */
import type { ImageBuilder } from "./builder.js";
import type { CheckCache, LockProvider } from "./coordination/types.js";
import { loadConfig, findProjectDir, type LoadedConfig } from "./config.js";
import { discoverPlugins, loadImageBuilder, type PluginDiscovery } from "./discovery.js";
import { CannotBuildError, ConfigError, UnknownBuilderError, describeValue } from "./errors.js";
import { validateCheckerChoices, type CheckerChoice } from "./checkerChoice.js";
import { validatePromoteFrom } from "./promotion/sources.js";
import { addDevCommand } from "./packageManager.js";
import { rejectUnknownKeys } from "./optionKeys.js";
import { optionsObject } from "./validate.js";
import type { Image } from "./image.js";

/** With no builder chosen, installed builders are asked in this order (others after, by name). */
export const BUILDER_PREFERENCE: readonly string[] = ["oci", "docker"];

export interface InitOptions {
  /** A builder name (registered or discovered) or an ImageBuilder instance. */
  imageBuilder?: string | ImageBuilder;
  /** Registry for images declared without one (host[:port][/namespace]). */
  imageRegistry?: string;
  /** Every checker erroring fails the build instead of building. */
  strict?: boolean;
  /** The checkers to ask, in order, by registered name (or checkers): beats KILN_IMAGE_CHECKERS and the config; unset: the builder's own. */
  imageCheckers?: readonly CheckerChoice[];
  /** Who hands out build leases: "file" (per host, the default), a plugin's name ("redis") or a LockProvider. */
  lockProvider?: string | LockProvider;
  /** Where existence checks are shared: "none" (the default), a plugin's name ("redis") or a CheckCache. */
  checkCache?: string | CheckCache;
  /** Registries an absent image is copied from instead of rebuilt (`["ghcr.io/acme-staging"]`); `[]`: none. */
  promoteFrom?: readonly string[];
  /** Where package.json and kiln.config.json are read; default: nearest package.json above cwd. */
  projectDir?: string;
  /** Resolve each base image to its digest when the tag is computed (pinBase.ts). */
  pinBase?: boolean;
}

let initState: InitOptions = {};
const registered = new Map<string, ImageBuilder | (() => ImageBuilder | Promise<ImageBuilder>)>();
const discoveryCache = new Map<string, PluginDiscovery>();
const builderCache = new Map<string, Promise<ImageBuilder>>();

/** Sets process-wide defaults (the reference guide's `flyte.init(image_builder=…)`). Replaces earlier init options. */
export function init(options: InitOptions = {}): void {
  if (
    options.imageBuilder !== undefined &&
    typeof options.imageBuilder !== "string" &&
    (typeof options.imageBuilder !== "object" || typeof options.imageBuilder?.buildImage !== "function")
  ) {
    throw new ConfigError(`Invalid init({ imageBuilder }) ${describeValue(String(options.imageBuilder))}: expected a builder name or an ImageBuilder`, {
      hint: 'Pass a name such as "docker" or an object with buildImage(image, options).',
    });
  }
  validateChoice("lockProvider", options.lockProvider, ["acquire"], 'Pass "file", a plugin name such as "redis", or an object with acquire(request).');
  validateChoice(
    "checkCache",
    options.checkCache,
    ["lookup", "putPresent", "putAbsent", "invalidate", "releaseClaim"],
    'Pass "none", a plugin name such as "redis", or a CheckCache object.',
  );
  rejectUnknownKeys("init options", optionsObject("init options", options), [
    "imageBuilder",
    "imageRegistry",
    "strict",
    "imageCheckers",
    "lockProvider",
    "checkCache",
    "promoteFrom",
    "projectDir",
    "pinBase",
  ]);
  validateCheckerChoices("init({ imageCheckers })", options.imageCheckers);
  if (options.pinBase !== undefined && typeof options.pinBase !== "boolean") {
    throw new ConfigError(`Invalid init({ pinBase }) ${describeValue(options.pinBase)}: expected true or false`, {
      hint: "Pass pinBase: true to pin base images by digest.",
    });
  }
  initState = { ...options, ...(options.promoteFrom !== undefined ? { promoteFrom: validatePromoteFrom("init({ promoteFrom })", options.promoteFrom) } : {}) };
  discoveryCache.clear();
  builderCache.clear();
}

/** A name, or an object with the methods of its kind. */
function validateChoice(option: string, value: unknown, methods: string[], hint: string): void {
  if (value === undefined || typeof value === "string") return;
  if (typeof value === "object" && value !== null && methods.every((m) => typeof (value as Record<string, unknown>)[m] === "function")) return;
  throw new ConfigError(`Invalid init({ ${option} }) ${describeValue(String(value))}: expected a name or an object with ${methods.join(", ")}`, { hint });
}

/** The options given to `init()` (a copy). */
export function getInitOptions(): InitOptions {
  return { ...initState };
}

/** Makes a builder available by name in this process, without a plugin package. */
export function registerImageBuilder(name: string, builder: ImageBuilder | (() => ImageBuilder | Promise<ImageBuilder>)): void {
  registered.set(name, builder);
  forgetLoadedBuilder(name);
}

export function unregisterImageBuilder(name: string): void {
  registered.delete(name);
  forgetLoadedBuilder(name);
}

/** The cache is keyed per project (`<projectDir>\0<name>`): drop the name in every project. */
function forgetLoadedBuilder(name: string): void {
  for (const key of builderCache.keys()) if (key.endsWith(`\0${name}`)) builderCache.delete(key);
}

export function resolveProjectDir(projectDir?: string): string {
  return projectDir ?? initState.projectDir ?? findProjectDir();
}

/** Discovery for a project, cached per process (cleared by `init()`). */
export function getDiscovery(projectDir: string): PluginDiscovery {
  let found = discoveryCache.get(projectDir);
  if (!found) {
    found = discoverPlugins(projectDir);
    discoveryCache.set(projectDir, found);
  }
  return found;
}

export interface SelectedBuilder {
  name: string;
  builder: ImageBuilder;
  /** Which rule picked it, for `kiln plugins` and debugging. */
  source: "option" | "init" | "env" | "config" | "only-installed" | "can-build" | "default";
}

function availableBuilderNames(projectDir: string): string[] {
  return [...new Set([...registered.keys(), ...getDiscovery(projectDir).imageBuilders.map((b) => b.name)])].sort();
}

function builderLabel(builder: ImageBuilder): string {
  const ctor = (builder as { constructor?: { name?: string } }).constructor?.name;
  return ctor && ctor !== "Object" ? ctor : "custom";
}

/** Loads a builder by name: registered in-process first, then discovered plugins. */
export async function loadBuilderByName(name: string, projectDir: string): Promise<ImageBuilder> {
  const key = `${projectDir}\0${name}`;
  let loading = builderCache.get(key);
  if (!loading) {
    loading = (async () => {
      const local = registered.get(name);
      if (local) return typeof local === "function" ? await local() : local;
      const discovery = getDiscovery(projectDir);
      const known = discovery.imageBuilders.some((b) => b.name === name) || discovery.problems.some((p) => p.kind === "imageBuilder" && p.name === name);
      if (!known) {
        const available = availableBuilderNames(projectDir);
        if (discovery.missing.length === 0) {
          throw new UnknownBuilderError(
            `Unknown image builder ${describeValue(name)}; available: ${available.length ? available.join(", ") : "(none installed)"}`,
            {
              hint: available.length
                ? `Use one of: ${available.join(", ")} — or add the plugin that provides ${describeValue(name)} to ${projectDir}/package.json.`
                : `Install a builder plugin, e.g. \`${addDevCommand(projectDir)} @kiln/docker\`.`,
              details: { name, available, projectDir },
            },
          );
        }
      }
      return loadImageBuilder(discovery, name); // precise PluginLoadError (not installed, bad export, …)
    })();
    builderCache.set(key, loading);
    loading.catch(() => builderCache.delete(key));
  }
  return loading;
}

/** Picks the builder for one build call (`image`: pick, among several installed, one that can build it). */
export async function selectBuilder(
  builder: string | ImageBuilder | undefined,
  projectDir: string,
  config: LoadedConfig = loadConfig(projectDir),
  image?: Image,
): Promise<SelectedBuilder> {
  const pick = async (choice: string | ImageBuilder, source: SelectedBuilder["source"]): Promise<SelectedBuilder> =>
    typeof choice === "string"
      ? { name: choice, builder: await loadBuilderByName(choice, projectDir), source }
      : { name: builderLabel(choice), builder: choice, source };
  if (builder !== undefined) return pick(builder, "option");
  if (initState.imageBuilder !== undefined) return pick(initState.imageBuilder, "init");
  const fromEnv = process.env.KILN_IMAGE_BUILDER;
  if (fromEnv) return pick(fromEnv, "env");
  if (config.imageBuilder) return pick(config.imageBuilder, "config");
  const available = availableBuilderNames(projectDir);
  if (available.length === 1) return pick(available[0]!, "only-installed");
  if (image !== undefined && available.length > 1) return firstThatCanBuild(image, available, projectDir);
  if (available.includes("docker")) return pick("docker", "default");
  throw new UnknownBuilderError(
    available.length === 0
      ? `No image builder is installed in ${projectDir}`
      : `Several image builders are installed (${available.join(", ")}) and none is selected`,
    {
      hint:
        available.length === 0
          ? `Install one, e.g. \`${addDevCommand(projectDir)} @kiln/docker\`, or pass an ImageBuilder to init({ imageBuilder }).`
          : 'Choose one with init({ imageBuilder }), KILN_IMAGE_BUILDER, --builder, or "imageBuilder" in kiln.config.json.',
      details: { available, projectDir },
    },
  );
}

/** Installed builders in preference order. */
export function orderByPreference(names: readonly string[]): string[] {
  const rank = (name: string) => {
    const at = BUILDER_PREFERENCE.indexOf(name);
    return at < 0 ? BUILDER_PREFERENCE.length : at;
  };
  return [...names].sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
}

/** The first builder (preference order) whose canBuild accepts the image; a builder without canBuild accepts all. */
async function firstThatCanBuild(image: Image, available: readonly string[], projectDir: string): Promise<SelectedBuilder> {
  const refusals: string[] = [];
  for (const name of orderByPreference(available)) {
    let candidate: ImageBuilder;
    try {
      candidate = await loadBuilderByName(name, projectDir);
    } catch (error) {
      refusals.push(`${name}: could not be loaded (${(error as Error).message})`);
      continue;
    }
    const answer = candidate.canBuild?.(image) ?? { ok: true as const };
    if (answer.ok) return { name, builder: candidate, source: "can-build" };
    refusals.push(`${name}: ${answer.reason}`);
  }
  throw new CannotBuildError(`None of the installed image builders can build ${image.uri}: ${refusals.join("; ")}`, {
    hint: `Install a builder that runs build steps (e.g. \`${addDevCommand(projectDir)} @kiln/docker\`), or change the image.`,
    details: { image: image.uri, refusals },
  });
}

/** The registry applied to images declared without one, or undefined. */
export function selectRegistry(config: LoadedConfig): string | undefined {
  return initState.imageRegistry ?? (process.env.KILN_IMAGE_REGISTRY || undefined) ?? config.imageRegistry;
}

/** Strict mode: option > init > KILN_STRICT > config. */
export function selectStrict(option: boolean | undefined, config: LoadedConfig): boolean {
  if (option !== undefined) return option;
  if (initState.strict !== undefined) return initState.strict;
  const env = process.env.KILN_STRICT;
  if (env !== undefined && env !== "") return env === "1" || env.toLowerCase() === "true";
  return config.strict ?? false;
}
