/**
 * Redis Sentinel and Redis Cluster for tests, made of Debian's `redis-server` alone (it runs as a
 * sentinel with `--sentinel`; `redis-cli --cluster create` joins cluster nodes): every process on a
 * free loopback port with its own temp directory, no persistence, stopped by `stop()`.
 *
 * Sentinel: one master, one replica, one sentinel watching them as `kiln` (quorum 1, a master is
 * "down" after 1 s), so a test can kill the master and see the replica promoted within seconds.
 * Cluster: three masters, no replicas, all 16384 slots assigned before `startRedisCluster` returns.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { freePort } from "./registry.js";

const run = promisify(execFile);
const REDIS_SERVER = "/usr/bin/redis-server";

export interface RedisNode {
  port: number;
  running(): boolean;
  /** SIGKILL: gone mid-whatever. */
  kill(): Promise<void>;
}

export interface TestRedisSentinel {
  /** The sentinel's port (what a client is given), and the name of the watched master. */
  sentinelPort: number;
  masterName: string;
  master: RedisNode;
  replica: RedisNode;
  /** Asks the sentinel which port the master has now. */
  masterPort(): Promise<number>;
  stop(): Promise<void>;
}

export interface TestRedisCluster {
  nodes: RedisNode[];
  /** `redis-cli -c` against the first node (follows MOVED redirections). */
  cli(...args: string[]): Promise<string>;
  stop(): Promise<void>;
}

export async function startRedisSentinel(): Promise<TestRedisSentinel> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-sentinel-"));
  const processes: ManagedProcess[] = [];
  const stop = async () => {
    await Promise.all(processes.map((p) => p.kill()));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const master = await startNode(dir, "master", []);
    processes.push(master);
    const replica = await startNode(dir, "replica", ["--replicaof", "127.0.0.1", String(master.port)]);
    processes.push(replica);
    await waitFor(async () => (await cli(replica.port, "INFO", "replication")).includes("master_link_status:up"), 15_000, "the replica to sync");

    const sentinelPort = await freePort();
    const conf = path.join(dir, "sentinel.conf");
    // The sentinel rewrites its config file (it must be writable); `resolve-hostnames` is not needed on loopback.
    await writeFile(
      conf,
      [
        `port ${sentinelPort}`,
        "bind 127.0.0.1",
        "protected-mode no",
        `dir ${dir}`,
        `sentinel monitor kiln 127.0.0.1 ${master.port} 1`,
        "sentinel down-after-milliseconds kiln 1000",
        "sentinel failover-timeout kiln 5000",
        "",
      ].join("\n"),
    );
    const sentinel = await spawnManaged([conf, "--sentinel"], sentinelPort, path.join(dir, "sentinel.log"));
    processes.push(sentinel);
    const masterPort = async () => Number((await cli(sentinelPort, "SENTINEL", "get-master-addr-by-name", "kiln")).trim().split("\n")[1]);
    await waitFor(
      async () => (await cli(sentinelPort, "SENTINEL", "replicas", "kiln")).includes(String(replica.port)),
      15_000,
      "the sentinel to see the replica",
    );
    return { sentinelPort, masterName: "kiln", master, replica, masterPort, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

export async function startRedisCluster(): Promise<TestRedisCluster> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-cluster-"));
  const nodes: ManagedProcess[] = [];
  const stop = async () => {
    await Promise.all(nodes.map((p) => p.kill()));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < 3; i++) {
      nodes.push(
        await startNode(dir, `node${i}`, [
          "--cluster-enabled",
          "yes",
          "--cluster-config-file",
          path.join(dir, `nodes-${i}.conf`),
          "--cluster-node-timeout",
          "2000",
        ]),
      );
    }
    await run("redis-cli", ["--cluster", "create", ...nodes.map((n) => `127.0.0.1:${n.port}`), "--cluster-replicas", "0", "--cluster-yes"], {
      timeout: 30_000,
    });
    for (const node of nodes) {
      await waitFor(async () => (await cli(node.port, "CLUSTER", "INFO")).includes("cluster_state:ok"), 20_000, `cluster node ${node.port} to be ready`);
    }
    const first = nodes[0]!.port;
    return {
      nodes,
      cli: async (...args: string[]) => (await run("redis-cli", ["-c", "-h", "127.0.0.1", "-p", String(first), ...args], { timeout: 10_000 })).stdout,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

interface ManagedProcess extends RedisNode {
  kill(): Promise<void>;
}

async function startNode(dir: string, name: string, extra: string[]): Promise<ManagedProcess> {
  const port = await freePort();
  return spawnManaged(
    [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--protected-mode",
      "no",
      "--dir",
      dir,
      "--save",
      "",
      "--appendonly",
      "no",
      "--dbfilename",
      `${name}.rdb`,
      ...extra,
    ],
    port,
    path.join(dir, `${name}.log`),
  );
}

async function spawnManaged(args: string[], port: number, logfile: string): Promise<ManagedProcess> {
  const child: ChildProcess = spawn(REDIS_SERVER, [...args, "--logfile", logfile], { stdio: "ignore" });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const running = () => child.exitCode === null && child.signalCode === null;
  const kill = async () => {
    if (!running()) return;
    child.kill("SIGKILL");
    await exited;
  };
  try {
    await waitFor(
      async () => {
        if (!running()) throw new Error(`redis-server ${args.join(" ")} exited: see ${logfile}`);
        return accepts(port);
      },
      15_000,
      `redis-server on port ${port}`,
    );
  } catch (error) {
    await kill();
    throw error;
  }
  return { port, running, kill };
}

async function cli(port: number, ...args: string[]): Promise<string> {
  try {
    return (await run("redis-cli", ["-h", "127.0.0.1", "-p", String(port), ...args], { timeout: 5_000 })).stdout;
  } catch {
    return "";
  }
}

async function waitFor(test: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await test())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.setTimeout(1_000, () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}
