/**
 * Registry build cache, so a fresh buildkitd in a fleet reuses what another one built:
 * - `cacheFrom`: cache to import — refs (`ghcr.io/acme/api:buildcache`), buildx-style CSV entries
 *   (`type=registry,ref=…`), or `true` for the default ref;
 * - `cacheTo`: where to export — the same forms; registry exports default to `mode=max` (every
 *   intermediate layer, not only the final image's).
 * The default ref is derived from the image's repository: `<registry>/<name>:buildcache`.
 * The engine's embedded BuildKit (Docker 20.10) can import a registry cache but not export one: there
 * `cacheTo` is left out with a warning.
 */
import { ConfigError, type Image } from "@kiln/core";
import type { CacheEntry } from "./controlMessages.js";
import type { BuildKitEndpoint } from "./endpoints.js";

export const DEFAULT_CACHE_TAG = "buildcache";

export interface CacheOptions {
  /** Cache to import: refs, `type=…,ref=…` entries, or `true` for the image's default cache ref. Default: KILN_BUILDKIT_CACHE_FROM (comma-separated refs, or `auto`). */
  cacheFrom?: ReadonlyArray<string | CacheEntry> | boolean;
  /** Where to export the cache: a ref, a `type=…` entry, or `true` for the image's default cache ref (mode=max). Default: KILN_BUILDKIT_CACHE_TO (a ref, or `auto`). */
  cacheTo?: string | CacheEntry | boolean;
}

export interface ResolvedCache {
  cacheImports: CacheEntry[];
  cacheExports: CacheEntry[];
  /** Why an export asked for was left out, if it was. */
  skipped?: string;
}

/** `<registry>/<name>:buildcache`, or undefined for a registry-less image. */
export function defaultCacheRef(image: Image): string | undefined {
  return image.registry ? `${image.registry}/${image.name}:${DEFAULT_CACHE_TAG}` : undefined;
}

/** A ref or a buildx-style CSV entry (`type=registry,ref=host/repo:tag,mode=max`). */
export function parseCacheEntry(value: string | CacheEntry): CacheEntry {
  if (typeof value !== "string") return { type: value.type, attrs: { ...value.attrs } };
  if (!value.includes("=")) return { type: "registry", attrs: { ref: value } };
  const attrs: Record<string, string> = {};
  for (const part of value.split(",")) {
    const eq = part.indexOf("=");
    if (eq <= 0)
      throw new ConfigError(`Invalid cache entry ${JSON.stringify(value)}: ${JSON.stringify(part)} is not key=value`, {
        hint: "Write `type=registry,ref=registry.example/app:buildcache[,mode=max]` or just the ref.",
        details: { value },
      });
    attrs[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  const type = attrs.type ?? "registry";
  delete attrs.type;
  return { type, attrs };
}

function fromEnv(value: string | undefined): string[] | boolean | undefined {
  if (!value?.trim()) return undefined;
  if (value.trim() === "auto") return true;
  // Entries are separated by `;` or whitespace (an entry itself may hold commas: `type=registry,ref=…`).
  return value.split(/[;\s]+/).filter(Boolean);
}

/** Options first, then KILN_BUILDKIT_CACHE_FROM/_TO, then the project's configured ones. */
export function resolveCache(
  image: Image,
  options: CacheOptions,
  endpoint: BuildKitEndpoint,
  env: NodeJS.ProcessEnv = process.env,
  configured: CacheOptions = {},
): ResolvedCache {
  const from = options.cacheFrom ?? fromEnv(env.KILN_BUILDKIT_CACHE_FROM) ?? configured.cacheFrom;
  const toEnv = fromEnv(env.KILN_BUILDKIT_CACHE_TO);
  const to = options.cacheTo ?? (Array.isArray(toEnv) ? toEnv[0] : toEnv) ?? configured.cacheTo;
  const fallback = defaultCacheRef(image);
  const needRef = (what: string) =>
    new ConfigError(`${what}: true needs an image with a registry to derive the cache ref from (${image.uri} has none)`, {
      hint: "Give the image a registry, or name the cache ref explicitly.",
      details: { field: what },
    });

  let cacheImports: CacheEntry[] = [];
  if (from === true) {
    if (!fallback) throw needRef("cacheFrom");
    cacheImports = [{ type: "registry", attrs: { ref: fallback } }];
  } else if (Array.isArray(from)) cacheImports = from.map(parseCacheEntry);

  let cacheExports: CacheEntry[] = [];
  if (to === true) {
    if (!fallback) throw needRef("cacheTo");
    cacheExports = [{ type: "registry", attrs: { ref: fallback, mode: "max" } }];
  } else if (to) {
    const entry = parseCacheEntry(to);
    if (entry.type === "registry" && !entry.attrs.mode) entry.attrs.mode = "max";
    cacheExports = [entry];
  }
  if (endpoint.kind === "docker-engine" && cacheExports.length > 0) {
    return {
      cacheImports,
      cacheExports: [],
      skipped: "the Docker Engine's embedded BuildKit cannot export a registry cache; cacheTo was left out (use a standalone buildkitd for it)",
    };
  }
  return { cacheImports, cacheExports };
}
