/**
 * The Lua scripts, each one atomic on the server. The keys of one script share a hash tag
 * (`{…}`), so they live in one slot and the scripts run on Redis Cluster too.
 */
import { createHash } from "node:crypto";

export interface RedisScript {
  lua: string;
  sha: string;
}

function script(lua: string): RedisScript {
  return { lua, sha: createHash("sha1").update(lua).digest("hex") };
}

/**
 * Take a lease: `SET lease token NX PX leaseMs`; on success the fencing counter is incremented in
 * the same step, so fencing tokens grow in the order leases are handed out.
 * KEYS: lease, fence. ARGV: token, leaseMs.
 * → {1, fence} taken; {0, holderToken, pttl} held by someone else.
 */
export const ACQUIRE = script(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, redis.call('INCR', KEYS[2])}
end
return {0, redis.call('GET', KEYS[1]) or '', redis.call('PTTL', KEYS[1])}
`);

/** Extend the lease only while it is still ours (compare, then PEXPIRE). KEYS: lease. ARGV: token, leaseMs. → 1 / 0. */
export const RENEW = script(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`);

/** Delete the lease only while it is still ours (compare-and-delete). KEYS: lease. ARGV: token. → 1 / 0. */
export const RELEASE = script(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`);

/**
 * Read a cache entry with its remaining life; on a miss, optionally claim the one check everybody
 * waits for (single flight). KEYS: entry, fill. ARGV: claim token ('' = do not claim), claim ms.
 * → {entry, pttl, state}: state 0 no claim asked, 1 claimed by this caller, 2 another caller checks.
 */
export const LOOKUP = script(`
local value = redis.call('GET', KEYS[1])
if value then
  return {value, redis.call('PTTL', KEYS[1]), 0}
end
if ARGV[1] == '' then
  return {'', 0, 0}
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {'', 0, 1}
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  return {'', 0, 1}
end
return {'', 0, 2}
`);

/** Store an entry and end any claim on it. KEYS: entry, fill. ARGV: value, ttl ms. */
export const PUT = script(`
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
return 1
`);
