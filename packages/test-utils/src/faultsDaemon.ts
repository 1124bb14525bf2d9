/**
 * A throw-away Docker daemon that tests may stop, SIGKILL and restart — never the machine's main
 * one. It listens on its own unix socket, with its own data/exec roots, pidfile and bridge (not
 * `--bridge=none`, which deletes docker0 — see tlsDaemon.ts) and no iptables changes. Its image
 * store starts empty: `loadImage` copies an image from the main daemon (`docker save | docker load`).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import http from "node:http";
import { join } from "node:path";
import { freePort } from "./registry.js";
import { createBridge, removeSandbox, run, sandboxDaemonArgs } from "./sandboxDaemon.js";

export interface ThrowawayDaemon {
  /** `unix:///…/docker.sock` */
  host: string;
  socketPath: string;
  /** DOCKER_HOST for a client of this daemon. */
  env: Record<string, string>;
  running(): boolean;
  /** SIGTERM (a clean stop) or SIGKILL (a crash); resolves once dockerd has exited. */
  halt(signal: "SIGTERM" | "SIGKILL"): Promise<void>;
  /** Starts dockerd again on the same roots and socket. */
  restart(): Promise<void>;
  /** Copies `ref` from the main daemon into this one. */
  loadImage(ref: string): Promise<void>;
  /** `docker ps -aq` on this daemon. */
  containers(): Promise<string[]>;
  /** Runs the docker CLI against this daemon; resolves with stdout. */
  docker(args: string[]): Promise<string>;
  log(): string;
  /** Stops it (SIGTERM, then SIGKILL), kills the containerd it started, removes roots and bridge. */
  stop(): Promise<void>;
}

export async function startThrowawayDaemon(): Promise<ThrowawayDaemon> {
  const root = await mkdtemp("/var/tmp/kiln-fault-dockerd-");
  const socketPath = join(root, "docker.sock");
  await run("mkdir", ["-p", join(root, "data"), join(root, "exec")]);
  const port = await freePort(); // only to pick a unique bridge name and subnet
  const bridge = `kilnflt${port}`;
  await createBridge(bridge, `10.253.${port % 250}.1/24`);
  let output = "";
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  const containerdPidFile = join(root, "exec", "containerd", "containerd.pid");
  /** The containerd a SIGKILLed dockerd left behind (what systemd's KillMode would end) — by its recorded pid. */
  const endLeftoverContainerd = async () => {
    const pid = Number(await readFile(containerdPidFile, "utf8").catch(() => ""));
    if (pid > 1) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    await rm(containerdPidFile, { force: true });
  };

  const launch = async () => {
    await endLeftoverContainerd();
    output = "";
    const proc = spawn("dockerd", [`--host=unix://${socketPath}`, ...sandboxDaemonArgs(root, bridge)], { stdio: ["ignore", "pipe", "pipe"] });
    child = proc;
    const collect = (d: Buffer) => (output = (output + d.toString()).slice(-20_000));
    proc.stdout?.on("data", collect);
    proc.stderr?.on("data", collect);
    exited = new Promise((resolve) => proc.once("exit", () => resolve()));
    const deadline = Date.now() + 60_000;
    while (!(await ping(socketPath))) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`throw-away dockerd exited during start:\n${output.slice(-3000)}`);
      if (Date.now() > deadline) throw new Error(`throw-away dockerd did not answer within 60 s:\n${output}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  };
  const isRunning = () => child !== undefined && child.exitCode === null && child.signalCode === null;
  const halt = async (signal: "SIGTERM" | "SIGKILL") => {
    if (!isRunning()) return;
    child!.kill(signal);
    const timer = setTimeout(() => child?.kill("SIGKILL"), 20_000);
    await exited;
    clearTimeout(timer);
  };
  const env = { DOCKER_HOST: `unix://${socketPath}` };
  const cli = (args: string[], input?: NodeJS.ReadableStream) =>
    new Promise<string>((resolve, reject) => {
      const p = spawn("docker", args, { env: { ...process.env, ...env, DOCKER_BUILDKIT: "0" }, stdio: [input ? "pipe" : "ignore", "pipe", "pipe"] });
      let out = "";
      let err = "";
      p.stdout!.on("data", (d: Buffer) => (out += d));
      p.stderr!.on("data", (d: Buffer) => (err += d));
      if (input) input.pipe(p.stdin!);
      p.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`docker ${args.join(" ")}: ${err}`))));
    });

  const stop = async () => {
    await halt("SIGTERM");
    await endLeftoverContainerd();
    await endShimsOf(join(root, "exec"));
    await removeSandbox(root, bridge);
  };

  try {
    await launch();
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    host: env.DOCKER_HOST,
    socketPath,
    env,
    running: isRunning,
    halt,
    restart: launch,
    async loadImage(ref) {
      const save = spawn("docker", ["save", ref], { stdio: ["ignore", "pipe", "inherit"] });
      await cli(["load", "-q"], save.stdout!);
    },
    async containers() {
      return (await cli(["ps", "-aq"])).split("\n").filter(Boolean);
    },
    docker: (args) => cli(args),
    log: () => output,
    stop,
  };
}

/** containerd shims (and with them the containers) of a daemon killed hard: found by their -address under our exec root, ended by pid. */
async function endShimsOf(execRoot: string): Promise<void> {
  const { readdir } = await import("node:fs/promises");
  for (const entry of await readdir("/proc").catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    if (cmdline.includes("containerd-shim") && cmdline.includes(`${execRoot}/`)) {
      try {
        process.kill(Number(entry), "SIGKILL");
      } catch {
        // gone
      }
    }
  }
}

function ping(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ socketPath, path: "/_ping", timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("error", () => resolve(false));
    req.on("timeout", () => req.destroy());
  });
}
