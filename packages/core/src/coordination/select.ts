/**
 * Which lock provider and which check cache a build uses, with the builder's precedence:
 *
 *   build(image, { lockProvider / checkCache }) › init({ lockProvider / checkCache }) ›
 *   KILN_LOCK_PROVIDER / KILN_CHECK_CACHE › config file ("lockProvider" / "checkCache") ›
 *   the default: "file" (the per-host lock) / "none" (no shared cache).
 *
 * A name other than the built-in ones is looked up among the plugins the project lists
 * (`kiln.lockProviders` / `kiln.checkCaches`) and loaded once per project and process, so one
 * process keeps one connection to a shared service however many images it builds.
 */
import type { LoadedConfig } from "../config.js";
import { loadCheckCache, loadLockProvider } from "../discovery.js";
import { getDiscovery, getInitOptions } from "../selection.js";
import type { CheckCache, LockProvider } from "./types.js";

/** The built-in per-host lock file (lock.ts). */
export const FILE_LOCK_PROVIDER = "file";
/** No shared check cache. */
export const NO_CHECK_CACHE = "none";
const NO_CACHE_NAMES = new Set([NO_CHECK_CACHE, "off", "false", "0"]);

export type CoordinationSource = "option" | "init" | "env" | "config" | "default";

export interface SelectedLockProvider {
  name: string;
  /** Undefined for the built-in per-host lock, which the engine takes itself. */
  provider: LockProvider | undefined;
  source: CoordinationSource;
}

export interface SelectedCheckCache {
  name: string;
  cache: CheckCache;
  source: CoordinationSource;
}

const loaded = new Map<string, Promise<unknown>>();

function loadOnce<T>(kind: string, projectDir: string, name: string, load: () => Promise<T>): Promise<T> {
  const key = `${kind}\0${projectDir}\0${name}`;
  let loading = loaded.get(key) as Promise<T> | undefined;
  if (!loading) {
    loading = load();
    loaded.set(key, loading);
    loading.catch(() => loaded.delete(key));
  }
  return loading;
}

/** The first choice given, by precedence, with where it came from. */
function firstChoice<T>(
  option: T | undefined,
  init: T | undefined,
  env: string | undefined,
  config: string | undefined,
): { choice: T | string; source: CoordinationSource } | undefined {
  if (option !== undefined) return { choice: option, source: "option" };
  if (init !== undefined) return { choice: init, source: "init" };
  if (env) return { choice: env, source: "env" };
  if (config) return { choice: config, source: "config" };
  return undefined;
}

function labelOf(instance: { name?: unknown; constructor?: { name?: string } }, fallback: string): string {
  if (typeof instance.name === "string" && instance.name) return instance.name;
  const ctor = instance.constructor?.name;
  return ctor && ctor !== "Object" ? ctor : fallback;
}

export async function selectLockProvider(option: string | LockProvider | undefined, projectDir: string, config: LoadedConfig): Promise<SelectedLockProvider> {
  const picked = firstChoice(option, getInitOptions().lockProvider, process.env.KILN_LOCK_PROVIDER, config.lockProvider);
  if (!picked || picked.choice === FILE_LOCK_PROVIDER) return { name: FILE_LOCK_PROVIDER, provider: undefined, source: picked?.source ?? "default" };
  const { choice, source } = picked;
  if (typeof choice !== "string") return { name: labelOf(choice, "custom"), provider: choice, source };
  const provider = await loadOnce("lock", projectDir, choice, () => loadLockProvider(getDiscovery(projectDir), choice));
  return { name: choice, provider, source };
}

export async function selectCheckCache(
  option: string | CheckCache | undefined,
  projectDir: string,
  config: LoadedConfig,
): Promise<SelectedCheckCache | undefined> {
  const picked = firstChoice(option, getInitOptions().checkCache, process.env.KILN_CHECK_CACHE, config.checkCache);
  if (!picked || (typeof picked.choice === "string" && NO_CACHE_NAMES.has(picked.choice.toLowerCase()))) return undefined;
  const { choice, source } = picked;
  if (typeof choice !== "string") return { name: labelOf(choice, "custom"), cache: choice, source };
  const cache = await loadOnce("cache", projectDir, choice, () => loadCheckCache(getDiscovery(projectDir), choice));
  return { name: choice, cache, source };
}
