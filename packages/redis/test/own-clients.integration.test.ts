/**
 * The `client` option with a well-kept client of the user's own — ioredis, as the README documents
 * it — against real Redis topologies made of Debian's redis-server: a single instance, Sentinel
 * (master + replica + sentinel; the master is killed and the replica promoted mid-test) and Cluster
 * (three masters: the lease and check keys of many images land on different shards, and every
 * script still runs on one shard because its keys share a hash tag).
 */
import { randomUUID } from "node:crypto";
import type { CheckCacheKey } from "@kiln/core";
import { startRedis, startRedisCluster, startRedisSentinel, type TestRedis, type TestRedisCluster, type TestRedisSentinel } from "@kiln/test-utils";
import { Cluster, Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { RedisCheckCache, RedisLockProvider } from "../src/index.js";

const DIGEST = `sha256:${"cd".repeat(32)}`;
const key = (tag: string): CheckCacheKey => ({ repository: "127.0.0.1:5000/app", tag, platforms: ["linux/amd64"] });

/** One holder at a time with growing fencing tokens, compare-and-delete release, and a cache round trip. */
async function exerciseLeaseAndCache(client: Redis | Cluster, image: string): Promise<void> {
  const a = new RedisLockProvider({ client, leaseMs: 2_000, pollMs: 20 });
  const b = new RedisLockProvider({ client, leaseMs: 2_000, pollMs: 20 });
  const first = await a.acquire({ key: image, image });
  const waiting = b.acquire({ key: image, image });
  await new Promise((r) => setTimeout(r, 100));
  expect(await first.renew()).toBe(true);
  await first.release();
  const second = await waiting;
  expect(second.waited).toBe(true);
  expect(second.fencingToken).toBeGreaterThan(first.fencingToken);
  expect(await first.renew()).toBe(false); // the released holder cannot extend its successor's lease
  await second.release();

  const cache = new RedisCheckCache({ client });
  expect((await cache.lookup(key(image))).entry).toBeNull();
  await cache.putPresent(key(image), { uri: `127.0.0.1:5000/app:${image}`, digest: DIGEST });
  expect((await cache.lookup(key(image))).entry).toMatchObject({ state: "present", digest: DIGEST, stale: false });
}

describe("a client of your own (ioredis)", () => {
  let single: TestRedis | undefined;
  let sentinel: TestRedisSentinel | undefined;
  let cluster: TestRedisCluster | undefined;
  const clients: Array<Redis | Cluster> = [];
  afterAll(async () => {
    clients.forEach((c) => c.disconnect());
    await Promise.all([single?.stop(), sentinel?.stop(), cluster?.stop()]);
  });

  it("a single instance behind a password: leases and the check cache work through ioredis's call()", async () => {
    single = await startRedis({ password: "own-client-pw-41" });
    const client = new Redis({ port: single.port, host: "127.0.0.1", password: "own-client-pw-41", lazyConnect: true, maxRetriesPerRequest: 1 });
    clients.push(client);
    await exerciseLeaseAndCache(client, "single-1");
    // The keys carry Kiln's default prefix (the user's client has none of its own).
    expect((await single.cli("KEYS", "kiln:*")).trim().split("\n").length).toBeGreaterThanOrEqual(2);
  });

  it("Sentinel: works through the sentinel, and again after the master is killed and the replica promoted", async () => {
    sentinel = await startRedisSentinel();
    const client = new Redis({ sentinels: [{ host: "127.0.0.1", port: sentinel.sentinelPort }], name: sentinel.masterName, maxRetriesPerRequest: 5 });
    clients.push(client);
    client.on("error", () => {}); // reconnect attempts to the killed master are expected; ioredis logs unhandled ones
    await exerciseLeaseAndCache(client, "sentinel-1");

    await sentinel.master.kill();
    const deadline = Date.now() + 30_000;
    while ((await sentinel.masterPort()) !== sentinel.replica.port) {
      if (Date.now() > deadline) throw new Error("the sentinel did not promote the replica within 30 s");
      await new Promise((r) => setTimeout(r, 200));
    }
    // ioredis asks the sentinel again on reconnect; give it a bounded number of tries.
    let lastError: unknown;
    for (let attempt = 0; attempt < 50; attempt++) {
      try {
        await exerciseLeaseAndCache(client, `sentinel-after-failover-${attempt}`);
        lastError = undefined;
        break;
      } catch (error) {
        lastError = error;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    expect(lastError).toBeUndefined();
    // ...and the client now talks to the promoted replica, which answers as a master.
    expect((client as unknown as { stream: { remotePort?: number } }).stream.remotePort).toBe(sentinel.replica.port);
    expect(((await client.call("ROLE")) as unknown[])[0]).toBe("master");
  }, 90_000);

  it("Cluster: leases and cache entries of many images spread over the shards, each script on one shard (no CROSSSLOT)", async () => {
    cluster = await startRedisCluster();
    const client = new Cluster(
      cluster.nodes.map((n) => ({ host: "127.0.0.1", port: n.port })),
      { redisOptions: { maxRetriesPerRequest: 2 } },
    );
    clients.push(client);
    const images = Array.from({ length: 12 }, () => `cluster-${randomUUID()}`);
    for (const image of images) await exerciseLeaseAndCache(client, image);

    // The entries really live on different shards: count keys per node.
    const perNode = await Promise.all(client.nodes("master").map(async (node) => Number(await node.call("DBSIZE"))));
    expect(perNode.filter((n) => n > 0).length).toBeGreaterThanOrEqual(2);
    expect(perNode.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(images.length * 2);
  }, 90_000);
});
