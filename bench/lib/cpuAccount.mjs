// CPU accounting for benchmarks whose work happens in other processes: the CPU time of the processes
// doing the measured work — dockerd with the children it reaped (runc, its re-exec helpers, BuildKit's
// emulator checks), containerd, docker-registry, and the children this process reaped (the kiln CLI) —
// so that other load on a shared machine does not count. Linux /proc only; elsewhere the CPU
// readings are undefined and the callers print none.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import os from "node:os";

let ticksPerSecond;
function hz() {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

// `containerd-shim` (the comm is cut to 15 characters) with the container processes it reaps: a RUN
// of the classic builder or a `docker run` runs under one; BuildKit's runc is dockerd's own child.
const WORK_PROCESSES = new Set(["dockerd", "containerd", "containerd-shim", "docker-registry"]);

/** Fields after the command name of /proc/<pid>/stat: [11] utime, [12] stime, [13] cutime, [14] cstime. */
function statFields(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return { name: stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")), f: stat.slice(stat.lastIndexOf(")") + 2).split(" ") };
}

/** Ticks of the work processes (own + reaped children), dockerd's apart, and of this process's reaped children. */
function workTicks() {
  let work = 0;
  let dockerd = 0;
  for (const pid of readdirSync("/proc").filter((entry) => /^\d+$/.test(entry))) {
    try {
      const { name, f } = statFields(pid);
      if (!WORK_PROCESSES.has(name)) continue;
      const ticks = Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
      work += ticks;
      if (name === "dockerd") dockerd += ticks;
    } catch {}
  }
  const self = statFields("self").f;
  const children = Number(self[13]) + Number(self[14]);
  return { work: work + children, dockerd };
}

/**
 * Starts a measured stretch; `stop()` gives `{ wallMs, busyCpuS, busyCores, dockerdCpuS }`: CPU-seconds
 * of the work processes and the cores they kept busy on average (CPU fields undefined off Linux).
 * Call `stop()` after the measured child processes have exited (their time counts once reaped).
 */
export function startCpuAccount() {
  const start = process.hrtime.bigint();
  let before;
  try {
    before = workTicks();
  } catch {}
  return {
    stop() {
      const wallMs = Number(process.hrtime.bigint() - start) / 1e6;
      if (!before) return { wallMs };
      const after = workTicks();
      const busyCpuS = (after.work - before.work) / hz();
      return { wallMs, busyCpuS, busyCores: busyCpuS / (wallMs / 1000), dockerdCpuS: (after.dockerd - before.dockerd) / hz() };
    },
  };
}

/** Cores the scheduler can use. */
export const cores = () => (typeof os.availableParallelism === "function" ? os.availableParallelism() : os.cpus().length);
