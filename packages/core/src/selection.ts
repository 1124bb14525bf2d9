/**
 * Which builder and which default registry an engine call uses.
 *
 * Builder:  build({ builder }) > init({ imageBuilder }) > KILN_IMAGE_BUILDER > config file
 *           (kiln.config.json, then package.json "kiln") > the only installed builder > "docker".
 * Registry: init({ imageRegistry }) > KILN_IMAGE_REGISTRY > config file.
 * Strict:   build({ strict }) > init({ strict }) > KILN_STRICT (1/true/0/false) > config file.
 *
 * Builder names are looked up first among builders registered in this process
 * (`registerImageBuilder`), then among the plugins discovered from the project's package.json.
 */
import type { ImageBuilder } from "./builder.js";
import { loadConfig, findProjectDir, type LoadedConfig } from "./config.js";
import { discoverPlugins, loadImageBuilder, type PluginDiscovery } from "./discovery.js";
import { ConfigError, UnknownBuilderError, describeValue } from "./errors.js";

export interface InitOptions {
  /** A builder name (registered or discovered) or an ImageBuilder instance. */
  imageBuilder?: string | ImageBuilder;
  /** Registry for images declared without one (host[:port][/namespace]). */
  imageRegistry?: string;
  /** Every checker erroring fails the build instead of building. */
  strict?: boolean;
  /** Where package.json and kiln.config.json are read; default: nearest package.json above cwd. */
  projectDir?: string;
}

let initState: InitOptions = {};
const registered = new Map<string, ImageBuilder | (() => ImageBuilder | Promise<ImageBuilder>)>();
const discoveryCache = new Map<string, PluginDiscovery>();
const builderCache = new Map<string, Promise<ImageBuilder>>();

/** Sets process-wide defaults (the reference guide's `flyte.init(image_builder=…)`). Replaces earlier init options. */
export function init(options: InitOptions = {}): void {
  if (options.imageBuilder !== undefined && typeof options.imageBuilder !== "string" &&
      (typeof options.imageBuilder !== "object" || typeof options.imageBuilder?.buildImage !== "function")) {
    throw new ConfigError(`Invalid init({ imageBuilder }) ${describeValue(String(options.imageBuilder))}: expected a builder name or an ImageBuilder`, {
      hint: 'Pass a name such as "docker" or an object with buildImage(image, options).',
    });
  }
  initState = { ...options };
  discoveryCache.clear();
  builderCache.clear();
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
  source: "option" | "init" | "env" | "config" | "only-installed" | "default";
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
                : "Install a builder plugin, e.g. `pnpm add -D @kiln/docker`.",
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

/** Picks the builder for one build call. */
export async function selectBuilder(builder: string | ImageBuilder | undefined, projectDir: string, config: LoadedConfig = loadConfig(projectDir)): Promise<SelectedBuilder> {
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
  if (available.includes("docker")) return pick("docker", "default");
  throw new UnknownBuilderError(
    available.length === 0
      ? `No image builder is installed in ${projectDir}`
      : `Several image builders are installed (${available.join(", ")}) and none is selected`,
    {
      hint: available.length === 0
        ? "Install one, e.g. `pnpm add -D @kiln/docker`, or pass an ImageBuilder to init({ imageBuilder })."
        : 'Choose one with init({ imageBuilder }), KILN_IMAGE_BUILDER, --builder, or "imageBuilder" in kiln.config.json.',
      details: { available, projectDir },
    },
  );
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
