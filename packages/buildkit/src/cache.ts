/**
 * Registry build cache, so a fresh buildkitd in a fleet reuses what another one built:
 * - `cacheFrom`: cache to import — refs (`ghcr.io/acme/api:buildcache`), buildx-style CSV entries
 *   (`type=registry,ref=…`), or `true` for the default ref;
 * - `cacheTo`: where to export — the same forms; registry exports default to `mode=max` (every
 *   intermediate layer, not only the final image's).
 * The default ref is derived from the image's repository: `<registry>/<name>:buildcache`.
 * The engine's embedded BuildKit (Docker 20.10) can import a registry cache but not export one: there
 * `cacheTo` is left out with a warning.
 *
 * A build split across endpoints (pool.split) exports once per group, each from its own daemon: were
 * they all to write the same ref, each export would replace the cache manifest under it and only the
 * last group's would survive. So in a split every registry export ref gets a suffix named after the
 * group's platforms (`groupCache`), and each group imports that ref and the one given; a
 * single-endpoint build keeps the refs exactly as given.
 */
import { createHash } from "node:crypto";
import { ConfigError, type Architecture, type Image } from "@kiln/core";
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

/** Longest tag a registry accepts (distribution's reference grammar: `[\w][\w.-]{0,127}`). */
const MAX_TAG_LENGTH = 128;

/**
 * The tag suffix of a split group's cache: its platforms, sorted (the same group gives the same
 * suffix whatever order the image lists them in), `/` turned into `-`, joined by `_` —
 * `linux-arm64`, `linux-amd64_linux-arm-v7`.
 */
export function groupCacheSuffix(platforms: readonly string[]): string {
  return [...platforms]
    .sort()
    .map((p) => p.replace(/[^A-Za-z0-9_.-]+/g, "-"))
    .join("_");
}

/**
 * `ref`'s cache for one split group: its tag (`latest` when it has none) followed by `-<suffix>`:
 * `host/app:buildcache` → `host/app:buildcache-linux-arm64`. A tag that would exceed the registry's
 * 128 characters ends with a digest of the suffix instead (still deterministic). A ref by digest
 * names one fixed cache and is left as it is.
 */
export function groupCacheRef(ref: string, platforms: readonly string[]): string {
  if (ref.includes("@")) return ref;
  const slash = ref.lastIndexOf("/");
  const colon = ref.lastIndexOf(":");
  const [repository, tag] = colon > slash ? [ref.slice(0, colon), ref.slice(colon + 1)] : [ref, "latest"];
  let suffix = groupCacheSuffix(platforms);
  if (tag.length + 1 + suffix.length > MAX_TAG_LENGTH) suffix = createHash("sha256").update(suffix).digest("hex").slice(0, 16);
  return `${repository}:${tag.slice(0, MAX_TAG_LENGTH - 1 - suffix.length)}-${suffix}`;
}

/** The cache of one Solve of a split build; `importFallbacks` pairs each group ref imported with the ref it was derived from. */
export interface GroupCache extends Pick<ResolvedCache, "cacheImports" | "cacheExports"> {
  /** Group ref → the ref as given, both imported: a failure of one of them alone is not worth a warning (cacheImportStatus.ts). */
  importFallbacks: Map<string, string>;
}

/**
 * The cache of one group of a split build (every group is one Solve on its own daemon).
 * Exports: each registry ref becomes the group's own (`groupCacheRef`), so every group's export
 * survives the others (on one ref, each would replace the cache manifest the one before it wrote).
 * Imports: the group's ref first (what the same group wrote last time), then the ref as given —
 * written by a single-endpoint build, by CI, or by a run that fell back to one endpoint; BuildKit
 * takes records from every import, and a missing one is only a miss. Other cache types (`inline`
 * travels in each group's image) are passed on unchanged.
 */
export function groupCache(cache: Pick<ResolvedCache, "cacheImports" | "cacheExports">, platforms: readonly Architecture[]): GroupCache {
  const isRegistryRef = (entry: CacheEntry): entry is CacheEntry & { attrs: { ref: string } } => entry.type === "registry" && !!entry.attrs.ref;
  const withRef = (entry: CacheEntry, ref: string): CacheEntry => ({ type: entry.type, attrs: { ...entry.attrs, ref } });
  const importFallbacks = new Map<string, string>();
  const cacheImports: CacheEntry[] = [];
  const seen = new Set<string>();
  const add = (entry: CacheEntry) => {
    const key = isRegistryRef(entry) ? `registry ${entry.attrs.ref}` : undefined;
    if (key && seen.has(key)) return; // the user may list a group ref already
    if (key) seen.add(key);
    cacheImports.push(entry);
  };
  for (const entry of cache.cacheImports) {
    if (!isRegistryRef(entry)) {
      add(entry);
      continue;
    }
    const ref = groupCacheRef(entry.attrs.ref, platforms);
    if (ref !== entry.attrs.ref) {
      add(withRef(entry, ref));
      importFallbacks.set(ref, entry.attrs.ref);
    }
    add(entry);
  }
  const cacheExports = cache.cacheExports.map((entry) => (isRegistryRef(entry) ? withRef(entry, groupCacheRef(entry.attrs.ref, platforms)) : entry));
  return { cacheImports, cacheExports, importFallbacks };
}
