// Public API of @kiln/redis.

// build leases across hosts (registered as `redis` in package.json `kiln.lockProviders`)
export { RedisLockProvider, DEFAULT_LEASE_MS } from "./lockProvider.js";
export type { RedisLockProviderOptions } from "./lockProvider.js";

// shared existence checks (registered as `redis` in package.json `kiln.checkCaches`)
export { RedisCheckCache, DEFAULT_CACHE_TTL_MS, DEFAULT_ABSENT_TTL_MS, MAX_ABSENT_TTL_MS } from "./checkCache.js";
export type { RedisCheckCacheOptions } from "./checkCache.js";

// connection settings (KILN_REDIS_* or options) and the shared connection
export { resolveSettings, DEFAULT_KEY_PREFIX } from "./settings.js";
export type { RedisClientLike, RedisConnectionOptions, RedisTlsOptions, RedisSettings } from "./settings.js";
export { closeSharedConnections } from "./connection.js";
