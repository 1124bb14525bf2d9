/**
 * Plugin discovery: the npm form of Python entry points.
 *
 * Only the packages the user's project lists (`dependencies`, `devDependencies`,
 * `optionalDependencies`) — plus the project itself — are looked at. Each is resolved FROM the
 * project directory, so pnpm's strict layout, workspaces, npm and hoisted layouts all work, and its
 * package.json `kiln` field is read as data. Nothing is imported until a provider is used
 * (`loadImageBuilder` / `loadImageChecker` / `loadCredentialProvider` / `loadLockProvider` /
 * `loadCheckCache`).
 *
 *   "kiln": { "apiVersion": 1,
 *             "imageBuilders": { "my_builder": "./dist/index.js#MyImageBuilder" },
 *             "imageCheckers": { "my_checker": "./dist/index.js#MyImageChecker" },
 *             "credentialProviders": { "ecr": "./dist/index.js#ecrCredentials" },
 *             "lockProviders": { "redis": "./dist/index.js#RedisLockProvider" },
 *             "checkCaches": { "redis": "./dist/index.js#RedisCheckCache" } }
 *
 * An entry without `#Export` means the module's default export.
 */
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { pathToFileURL } from "node:url";
import { KILN_API_VERSION, type ImageBuilder, type ImageCheckerLike } from "./builder.js";
import { PluginLoadError, describeValue } from "./errors.js";
import { registerCredentialProvider, type CredentialProvider } from "./registry/credentials.js";
import type { CheckCache, LockProvider } from "./coordination/types.js";

export type ProviderKind = "imageBuilder" | "imageChecker" | "credentialProvider" | "lockProvider" | "checkCache";

/** The manifest field of each kind, which is also the PluginDiscovery list holding it. */
const MANIFEST_FIELDS = {
  imageBuilder: "imageBuilders",
  imageChecker: "imageCheckers",
  credentialProvider: "credentialProviders",
  lockProvider: "lockProviders",
  checkCache: "checkCaches",
} as const satisfies Record<ProviderKind, string>;
type ManifestField = (typeof MANIFEST_FIELDS)[ProviderKind];
const KIND_LABEL: Record<ProviderKind, string> = {
  imageBuilder: "image builder",
  imageChecker: "image checker",
  credentialProvider: "credential provider",
  lockProvider: "lock provider",
  checkCache: "check cache",
};

export interface DiscoveredProvider {
  kind: ProviderKind;
  name: string;
  packageName: string;
  packageVersion: string | undefined;
  packageDir: string;
  /** As written in the manifest, e.g. "./dist/index.js#MyImageBuilder". */
  entry: string;
  /** Absolute path of the module file. */
  file: string;
  /** Named export, or "default". */
  exportName: string;
}

export interface DiscoveredPackage {
  name: string;
  version: string | undefined;
  dir: string;
  apiVersion: unknown;
  /** True for the project's own package.json. */
  self: boolean;
}

export interface PluginProblem {
  packageName: string;
  /** Provider name concerned, when the problem is about one. */
  name?: string;
  kind?: ProviderKind;
  error: PluginLoadError;
}

export interface PluginDiscovery {
  projectDir: string;
  packages: DiscoveredPackage[];
  imageBuilders: DiscoveredProvider[];
  imageCheckers: DiscoveredProvider[];
  credentialProviders: DiscoveredProvider[];
  lockProviders: DiscoveredProvider[];
  checkCaches: DiscoveredProvider[];
  /** Listed in package.json but not installed (may or may not be plugins). */
  missing: string[];
  /** Broken manifests, incompatible apiVersions and duplicate names; raised when the name is used. */
  problems: PluginProblem[];
}

interface PackageJson {
  name?: string;
  version?: string;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  kiln?: unknown;
}

function readPackageJson(file: string): PackageJson | undefined {
  try {
    return JSON.parse(readFileSync(file, "utf8")) as PackageJson;
  } catch {
    return undefined;
  }
}

/** The node_modules folders Node would search from `projectDir`, nearest first. */
function nodeModulesChain(projectDir: string): string[] {
  const chain: string[] = [];
  let dir = resolve(projectDir);
  for (;;) {
    if (!dir.endsWith(`${sep}node_modules`)) chain.push(join(dir, "node_modules"));
    const parent = dirname(dir);
    if (parent === dir) return chain;
    dir = parent;
  }
}

/**
 * The directory of dependency `name` as Node would resolve `<name>/package.json` from `projectDir`
 * (symlinks followed), or undefined. Node's lookup is walking `node_modules` upward from the project,
 * which is done directly first (fast, and immune to `exports` maps that hide package.json);
 * `createRequire(projectDir/package.json).resolve` is the fallback for anything else (NODE_PATH…).
 */
export function resolvePackageDir(name: string, projectDir: string, chain: string[] = nodeModulesChain(projectDir)): string | undefined {
  for (const modules of chain) {
    const candidate = join(modules, name, "package.json");
    if (existsSync(candidate)) return realpathSync(dirname(candidate));
  }
  try {
    const require = createRequire(join(projectDir, "package.json"));
    return dirname(realpathSync(require.resolve(`${name}/package.json`)));
  } catch {
    return undefined;
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Reads the package.json of the project and its dependencies and collects every declared provider. */
export function discoverPlugins(projectDir: string = process.cwd()): PluginDiscovery {
  const root = resolve(projectDir);
  const result: PluginDiscovery = {
    projectDir: root,
    packages: [],
    imageBuilders: [],
    imageCheckers: [],
    credentialProviders: [],
    lockProviders: [],
    checkCaches: [],
    missing: [],
    problems: [],
  };
  const projectPkg = readPackageJson(join(root, "package.json"));
  if (!projectPkg) return result;

  const names = new Set<string>([
    ...Object.keys(projectPkg.dependencies ?? {}),
    ...Object.keys(projectPkg.devDependencies ?? {}),
    ...Object.keys(projectPkg.optionalDependencies ?? {}),
  ]);
  const candidates: Array<{ pkg: PackageJson; dir: string; self: boolean; listedAs: string }> = [];
  if (projectPkg.kiln !== undefined) candidates.push({ pkg: projectPkg, dir: root, self: true, listedAs: projectPkg.name ?? root });
  const chain = nodeModulesChain(root);
  for (const name of [...names].sort()) {
    // One read per dependency in the common case; symlinks are resolved only for plugins.
    let found: { pkg: PackageJson; file: string } | undefined;
    for (const modules of chain) {
      const file = join(modules, name, "package.json");
      const pkg = readPackageJson(file);
      if (pkg) {
        found = { pkg, file };
        break;
      }
    }
    if (!found) {
      const dir = resolvePackageDir(name, root, []); // createRequire fallback (NODE_PATH, …)
      const pkg = dir ? readPackageJson(join(dir, "package.json")) : undefined;
      if (!dir || !pkg) {
        result.missing.push(name);
        continue;
      }
      found = { pkg, file: join(dir, "package.json") };
    }
    if (found.pkg.kiln !== undefined) candidates.push({ pkg: found.pkg, dir: realpathSync(dirname(found.file)), self: false, listedAs: name });
  }

  const seen = new Map<string, DiscoveredProvider>(); // `${kind}:${name}` → first provider
  for (const { pkg, dir, self, listedAs } of candidates) {
    const packageName = pkg.name ?? listedAs;
    const manifest = pkg.kiln;
    const manifestProblem = (message: string, hint: string) =>
      result.problems.push({ packageName, error: new PluginLoadError(message, { hint, details: { package: packageName } }) });
    if (!isPlainObject(manifest)) {
      if (!self)
        manifestProblem(
          `The "kiln" field of ${packageName} must be an object, got ${describeValue(manifest)}`,
          "Ask the plugin author to fix its package.json.",
        );
      continue;
    }
    // The project's own `"imageCheckers": [...]` (a list) is configuration (config.ts), not a table of providers.
    const isConfigList = (field: string) => self && Array.isArray(manifest[field]);
    const declaresProviders = Object.values(MANIFEST_FIELDS).some((field) => manifest[field] !== undefined && !isConfigList(field));
    if (self && !declaresProviders) continue; // the project's own `kiln` field is just configuration
    result.packages.push({ name: packageName, version: pkg.version, dir, apiVersion: manifest.apiVersion, self });
    if (manifest.apiVersion !== KILN_API_VERSION) {
      const problem = new PluginLoadError(
        `Plugin ${packageName}${pkg.version ? `@${pkg.version}` : ""} declares kiln.apiVersion ${describeValue(manifest.apiVersion)}, but this @kiln/core implements apiVersion ${KILN_API_VERSION}`,
        {
          hint:
            typeof manifest.apiVersion === "number" && manifest.apiVersion > KILN_API_VERSION
              ? "Upgrade @kiln/core to a version that supports this plugin."
              : `Upgrade ${packageName} to a release built for kiln apiVersion ${KILN_API_VERSION}.`,
          details: { package: packageName, apiVersion: manifest.apiVersion, supported: KILN_API_VERSION },
        },
      );
      // Remember the names it would provide so that selecting one explains why it is unavailable.
      for (const kind of Object.keys(MANIFEST_FIELDS) as ProviderKind[]) {
        const table = manifest[MANIFEST_FIELDS[kind]];
        if (isPlainObject(table)) for (const name of Object.keys(table)) result.problems.push({ packageName, name, kind, error: problem });
      }
      if (!Object.values(MANIFEST_FIELDS).some((f) => isPlainObject(manifest[f]))) result.problems.push({ packageName, error: problem });
      continue;
    }
    for (const kind of Object.keys(MANIFEST_FIELDS) as ProviderKind[]) {
      const field = MANIFEST_FIELDS[kind];
      const table = manifest[field];
      if (table === undefined || isConfigList(field)) continue;
      if (!isPlainObject(table)) {
        manifestProblem(`kiln.${field} of ${packageName} must be an object of name → "./file.js#Export"`, "Ask the plugin author to fix its package.json.");
        continue;
      }
      for (const [name, entry] of Object.entries(table)) {
        if (typeof entry !== "string" || entry.length === 0) {
          result.problems.push({
            packageName,
            name,
            kind,
            error: new PluginLoadError(`kiln.${field}.${name} of ${packageName} must be a string like "./dist/index.js#Export", got ${describeValue(entry)}`, {
              hint: "Ask the plugin author to fix its package.json.",
              details: { package: packageName, name },
            }),
          });
          continue;
        }
        const hashAt = entry.lastIndexOf("#");
        const filePart = hashAt === -1 ? entry : entry.slice(0, hashAt);
        const exportName = hashAt === -1 || hashAt === entry.length - 1 ? "default" : entry.slice(hashAt + 1);
        const file = resolve(dir, filePart);
        const provider: DiscoveredProvider = { kind, name, packageName, packageVersion: pkg.version, packageDir: dir, entry, file, exportName };
        const key = `${kind}:${name}`;
        const previous = seen.get(key);
        if (previous) {
          result.problems.push({
            packageName,
            name,
            kind,
            error: new PluginLoadError(`Two plugins declare the ${KIND_LABEL[kind]} ${describeValue(name)}: ${previous.packageName} and ${packageName}`, {
              hint: `Remove one of ${previous.packageName} and ${packageName} from your dependencies, or ask one author to rename it.`,
              details: { name, packages: [previous.packageName, packageName] },
            }),
          });
          continue;
        }
        seen.set(key, provider);
        providersOf(result, kind).push(provider);
      }
    }
  }
  return result;
}

function providersOf(discovery: PluginDiscovery, kind: ProviderKind): DiscoveredProvider[] {
  const field: ManifestField = MANIFEST_FIELDS[kind];
  return discovery[field];
}

/** The provider of `name`, or the precise reason it is unavailable. */
export function findProvider(discovery: PluginDiscovery, kind: ProviderKind, name: string): DiscoveredProvider {
  const problem = discovery.problems.find((p) => p.kind === kind && p.name === name);
  if (problem) throw problem.error;
  const provider = providersOf(discovery, kind).find((p) => p.name === name);
  if (provider) return provider;
  const available = providersOf(discovery, kind).map((p) => p.name);
  if (discovery.missing.length > 0) {
    throw new PluginLoadError(
      `No installed plugin provides the ${KIND_LABEL[kind]} ${describeValue(name)}; these dependencies of ${join(discovery.projectDir, "package.json")} are listed but not installed: ${discovery.missing.join(", ")}`,
      {
        hint: "Run your package manager's install (e.g. `pnpm install` or `npm install`) in the project directory.",
        details: { name, missing: discovery.missing, available },
      },
    );
  }
  throw new PluginLoadError(
    `No installed plugin provides the ${KIND_LABEL[kind]} ${describeValue(name)}${available.length ? `; available: ${available.join(", ")}` : ""}`,
    { hint: "Add the plugin package to your project's dependencies.", details: { name, available } },
  );
}

const moduleCache = new Map<string, Promise<Record<string, unknown>>>();

/** Imports the provider's module (ESM or CommonJS) and returns the export it names. */
export async function importProvider(provider: DiscoveredProvider): Promise<unknown> {
  const label = `${KIND_LABEL[provider.kind]} ${describeValue(provider.name)} of ${provider.packageName}`;
  const rel = relative(provider.packageDir, provider.file);
  if (rel.startsWith("..") || isAbsolute(rel) || rel.split(sep).includes("node_modules")) {
    throw new PluginLoadError(`The ${label} points outside its package: ${describeValue(provider.entry)}`, {
      hint: 'A plugin entry must be a file inside the plugin package, like "./dist/index.js#Export".',
      details: { package: provider.packageName, entry: provider.entry },
    });
  }
  if (!existsSync(provider.file)) {
    throw new PluginLoadError(`The ${label} names ${describeValue(provider.entry)}, but ${provider.file} does not exist`, {
      hint: `Reinstall ${provider.packageName}; if you develop it, build it first (its entry is usually in dist/).`,
      details: { package: provider.packageName, entry: provider.entry, file: provider.file },
    });
  }
  let loading = moduleCache.get(provider.file);
  if (!loading) {
    loading = import(pathToFileURL(provider.file).href) as Promise<Record<string, unknown>>;
    moduleCache.set(provider.file, loading);
  }
  let mod: Record<string, unknown>;
  try {
    mod = await loading;
  } catch (error) {
    moduleCache.delete(provider.file);
    throw new PluginLoadError(`Loading the ${label} from ${provider.file} failed: ${(error as Error)?.message ?? String(error)}`, {
      hint: `Check that ${provider.packageName} and its dependencies are installed and built.`,
      cause: error,
      details: { package: provider.packageName, file: provider.file },
    });
  }
  // CommonJS modules arrive as { default: module.exports, ...detected named exports }.
  const cjs = isPlainObject(mod.default) || typeof mod.default === "function" ? (mod.default as Record<string, unknown>) : undefined;
  const value = provider.exportName in mod ? mod[provider.exportName] : cjs && provider.exportName in cjs ? cjs[provider.exportName] : undefined;
  if (value === undefined) {
    const exported = [...new Set([...Object.keys(mod), ...(cjs && isPlainObject(cjs) ? Object.keys(cjs) : [])])].sort();
    throw new PluginLoadError(
      `The ${label} names export ${describeValue(provider.exportName)} of ${provider.file}, which has no such export; it exports: ${exported.length ? exported.join(", ") : "(nothing)"}`,
      {
        hint: `Fix the "kiln" field of ${provider.packageName} to one of the existing exports.`,
        details: { package: provider.packageName, export: provider.exportName, exports: exported },
      },
    );
  }
  return value;
}

function shapeError(provider: DiscoveredProvider, expected: string, got: unknown): PluginLoadError {
  const gotText = typeof got === "function" ? `class/function ${(got as { name?: string }).name || "(anonymous)"}` : typeof got;
  return new PluginLoadError(
    `The ${KIND_LABEL[provider.kind]} ${describeValue(provider.name)} of ${provider.packageName} (${provider.entry}) has the wrong shape: expected ${expected}, got ${gotText}`,
    {
      hint: `Make the export ${provider.exportName} ${expected}.`,
      details: { package: provider.packageName, entry: provider.entry },
    },
  );
}

function instantiate(provider: DiscoveredProvider, Cls: new () => unknown): unknown {
  try {
    return new Cls();
  } catch (error) {
    throw new PluginLoadError(
      `Creating the ${KIND_LABEL[provider.kind]} ${describeValue(provider.name)} of ${provider.packageName} with \`new ${Cls.name}()\` failed: ${(error as Error)?.message ?? String(error)}`,
      {
        hint: "A plugin class must be constructible with no arguments (read its settings from the environment).",
        cause: error,
        details: { package: provider.packageName },
      },
    );
  }
}

/** A builder instance: an exported instance, or a class instantiated with no arguments. */
export async function loadImageBuilder(discovery: PluginDiscovery, name: string): Promise<ImageBuilder> {
  const provider = findProvider(discovery, "imageBuilder", name);
  const value = await importProvider(provider);
  const expected = "an ImageBuilder (an object or a class with a buildImage(image, options) method)";
  const builder =
    typeof value === "function" && typeof (value as { prototype?: { buildImage?: unknown } }).prototype?.buildImage === "function"
      ? instantiate(provider, value as new () => unknown)
      : value;
  if (typeof builder !== "object" || builder === null || typeof (builder as ImageBuilder).buildImage !== "function") {
    throw shapeError(provider, expected, value);
  }
  return builder as ImageBuilder;
}

/** A checker: a class with a static `imageExists` (used as is), a class instantiated, or an instance. */
export async function loadImageChecker(discovery: PluginDiscovery, name: string): Promise<ImageCheckerLike> {
  const provider = findProvider(discovery, "imageChecker", name);
  const value = await importProvider(provider);
  const expected = "an ImageChecker (a class with a static imageExists, or an object/class with an imageExists method)";
  if (typeof value === "function") {
    if (typeof (value as { imageExists?: unknown }).imageExists === "function") return value as unknown as ImageCheckerLike;
    if (typeof (value as { prototype?: { imageExists?: unknown } }).prototype?.imageExists === "function") {
      return instantiate(provider, value as new () => unknown) as ImageCheckerLike;
    }
    throw shapeError(provider, expected, value);
  }
  if (typeof value === "object" && value !== null && typeof (value as { imageExists?: unknown }).imageExists === "function") {
    return value as ImageCheckerLike;
  }
  throw shapeError(provider, expected, value);
}

/** A credential provider (registry/credentials.ts shape: { name, matches(host), getCredentials(host) }); a class is instantiated. */
export async function loadCredentialProvider(discovery: PluginDiscovery, name: string): Promise<CredentialProvider> {
  const provider = findProvider(discovery, "credentialProvider", name);
  const value = await importProvider(provider);
  const expected = "a CredentialProvider (an object or a class with matches(host) and getCredentials(host))";
  const isShape = (v: unknown) =>
    typeof v === "object" &&
    v !== null &&
    typeof (v as CredentialProvider).matches === "function" &&
    typeof (v as CredentialProvider).getCredentials === "function";
  const instance =
    typeof value === "function" && typeof (value as { prototype?: Partial<CredentialProvider> }).prototype?.getCredentials === "function"
      ? instantiate(provider, value as new () => unknown)
      : value;
  if (!isShape(instance)) throw shapeError(provider, expected, value);
  const named = instance as CredentialProvider;
  return typeof named.name === "string" && named.name ? named : Object.assign(named, { name: provider.name });
}

/** An object with every one of `methods`, or a class with them (instantiated with no arguments: it reads its settings from the environment). */
async function loadInstanceWith<T>(discovery: PluginDiscovery, kind: ProviderKind, name: string, methods: string[], expected: string): Promise<T> {
  const provider = findProvider(discovery, kind, name);
  const value = await importProvider(provider);
  const hasMethods = (v: unknown) => typeof v === "object" && v !== null && methods.every((m) => typeof (v as Record<string, unknown>)[m] === "function");
  const instance =
    typeof value === "function" && methods.every((m) => typeof (value as { prototype?: Record<string, unknown> }).prototype?.[m] === "function")
      ? instantiate(provider, value as new () => unknown)
      : value;
  if (!hasMethods(instance)) throw shapeError(provider, expected, value);
  return instance as T;
}

/** A lock provider (coordination/types.ts: `acquire(request)` → a Lease); a class is instantiated. */
export function loadLockProvider(discovery: PluginDiscovery, name: string): Promise<LockProvider> {
  return loadInstanceWith<LockProvider>(discovery, "lockProvider", name, ["acquire"], "a LockProvider (an object or a class with acquire(request))");
}

/** A check cache (coordination/types.ts: lookup, putPresent, putAbsent, invalidate, releaseClaim); a class is instantiated. */
export function loadCheckCache(discovery: PluginDiscovery, name: string): Promise<CheckCache> {
  return loadInstanceWith<CheckCache>(
    discovery,
    "checkCache",
    name,
    ["lookup", "putPresent", "putAbsent", "invalidate", "releaseClaim"],
    "a CheckCache (an object or a class with lookup, putPresent, putAbsent, invalidate and releaseClaim)",
  );
}

const activated = new Set<string>();

/**
 * Registers every discovered credential provider with the registry client (imports them — the
 * engine calls this only when it is about to talk to a registry). Broken ones are reported, not fatal.
 */
export async function activateCredentialProviders(discovery: PluginDiscovery): Promise<PluginLoadError[]> {
  const problems: PluginLoadError[] = [];
  for (const entry of discovery.credentialProviders) {
    const key = `${entry.packageDir}#${entry.name}`;
    if (activated.has(key)) continue;
    try {
      registerCredentialProvider(await loadCredentialProvider(discovery, entry.name));
      activated.add(key);
    } catch (error) {
      problems.push(PluginLoadError.isInstance(error) ? (error as PluginLoadError) : new PluginLoadError(String(error)));
    }
  }
  return problems;
}
