/**
 * Simulated hosts for the multi-host tests: each `kiln` process runs in a UTS namespace of its own
 * (`unshare --uts`, then `hostname <name>`), so `os.hostname()` — what the lease records as its
 * holder — differs per host exactly as on separate machines; each host also gets its own per-host
 * lock directory (KILN_LOCK_DIR). They share the Docker daemon, the registry and Redis, as CI runners
 * share a registry and a Redis. A user project installs the built @kiln/core, @kiln/docker and
 * @kiln/redis, and the real `kiln` binary runs in it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";

export const REDIS_PKG = resolve(import.meta.dirname, "..");
export const CORE_PKG = resolve(REDIS_PKG, "../core");
export const DOCKER_PKG = resolve(REDIS_PKG, "../docker");

/**
 * A new project directory (real path) with @kiln/core, @kiln/docker and @kiln/redis installed the
 * way a package manager would: each a real directory holding a copy of the package's package.json
 * and built dist (taken now, so another build of the workspace meanwhile cannot pull files from
 * under the running processes), its own third-party dependencies linked from the workspace. Each
 * plugin resolves `@kiln/core` to that one copy. Returns the project and the `kiln` binary in it.
 */
export function installedProject(prefix: string): { project: string; cli: string } {
  const project = realpathSync(mkdtempSync(join(tmpdir(), prefix)));
  writeFileSync(
    join(project, "package.json"),
    JSON.stringify({
      name: "multi-host-app",
      private: true,
      type: "module",
      dependencies: { "@kiln/core": "*", "@kiln/docker": "*", "@kiln/redis": "*" },
    }),
  );
  for (const [name, dir] of [
    ["core", CORE_PKG],
    ["docker", DOCKER_PKG],
    ["redis", REDIS_PKG],
  ] as const) {
    const target = join(project, "node_modules/@kiln", name);
    mkdirSync(join(target, "node_modules"), { recursive: true });
    cpSync(join(dir, "package.json"), join(target, "package.json"));
    cpSync(join(dir, "dist"), join(target, "dist"), { recursive: true });
    for (const entry of readdirSync(join(dir, "node_modules"))) {
      if (entry === "@kiln" || entry.startsWith(".")) continue;
      symlinkSync(realpathSync(join(dir, "node_modules", entry)), join(target, "node_modules", entry));
    }
  }
  return { project, cli: join(project, "node_modules/@kiln/core/dist/cli/main.js") };
}

/** True when every relative import of every module in `dist` exists (a copy taken mid-rebuild would miss chunks). */
export function distComplete(dist: string): boolean {
  const files = readdirSync(dist, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".js"));
  if (files.length === 0) return false;
  for (const file of files) {
    const text = readFileSync(join(dist, file), "utf8");
    for (const match of text.matchAll(/(?:from\s*|import\s*\(\s*)["'](\.{1,2}\/[^"']+)["']/g)) {
      if (!existsSync(resolve(dist, dirname(file), match[1]!))) return false;
    }
  }
  return true;
}

/** installedProject, taken again (a few times, bounded) while a concurrent workspace build leaves a dist incomplete. */
export async function installedProjectWhenBuilt(prefix: string): Promise<{ project: string; cli: string }> {
  for (let attempt = 1; ; attempt++) {
    const installed = installedProject(prefix);
    const packages = readdirSync(join(installed.project, "node_modules/@kiln"));
    if (packages.every((name) => distComplete(join(installed.project, "node_modules/@kiln", name, "dist")))) return installed;
    rmSync(installed.project, { recursive: true, force: true });
    if (attempt >= 10) throw new Error("the built dist of @kiln/core, @kiln/docker or @kiln/redis stayed incomplete: run `pnpm build` first");
    await new Promise((r) => setTimeout(r, 5_000));
  }
}

export type KilnEvent = Record<string, any> & { type: string; time: number };

export interface HostRun {
  host: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The NDJSON events (`--json`) the process printed on stderr. */
  events: KilnEvent[];
  startedAt: number;
  endedAt: number;
}

export interface StartedRun {
  host: string;
  child: ChildProcess;
  events: KilnEvent[];
  done: Promise<HostRun>;
}

export interface RunOnHostOptions {
  /** The child's whole environment (spread process.env to inherit). */
  env: NodeJS.ProcessEnv;
  /** SIGKILLed after this long: a hang fails the assertions, not the whole run. */
  timeoutMs: number;
  /** Called for every event as it arrives. */
  onEvent?: (event: KilnEvent, run: StartedRun) => void;
}

/** Runs `kiln <args>` in `project` as if on host `host` (its own UTS namespace and lock directory). */
export function runOnHost(host: string, { project, cli }: { project: string; cli: string }, args: string[], options: RunOnHostOptions): StartedRun {
  const lockDir = join(project, `locks-${host}`);
  mkdirSync(lockDir, { recursive: true, mode: 0o700 });
  const child = spawn("unshare", ["--uts", "sh", "-c", 'hostname "$KILN_TEST_HOSTNAME" && exec "$@"', "sh", process.execPath, cli, ...args], {
    cwd: project,
    env: { ...options.env, KILN_TEST_HOSTNAME: host, KILN_LOCK_DIR: lockDir },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const events: KilnEvent[] = [];
  const started: StartedRun = { host, child, events, done: undefined as unknown as Promise<HostRun> };
  const startedAt = Date.now();
  let stdout = "";
  let stderr = "";
  let pending = "";
  child.stdout!.on("data", (c) => (stdout += c));
  child.stderr!.on("data", (c: Buffer) => {
    stderr += c;
    pending += c;
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (!line.startsWith("{")) continue;
      try {
        const event = JSON.parse(line) as KilnEvent;
        events.push(event);
        options.onEvent?.(event, started);
      } catch {
        // not an event
      }
    }
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs);
  started.done = new Promise((done) => {
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      done({ host, code, signal, stdout, stderr, events, startedAt, endedAt: Date.now() });
    });
  });
  return started;
}
