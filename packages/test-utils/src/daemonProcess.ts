/**
 * A daemon a test starts (dockerd, buildkitd): spawned with its output kept (the last 20 000
 * characters, for the error of a failed start), stopped with SIGTERM then SIGKILL after a grace
 * period, and waited for until a readiness probe answers — failing, after `cleanup`, with its log
 * when it exits or does not answer in time.
 */
import { spawn, type ChildProcess } from "node:child_process";

export interface DaemonProcess {
  /** The daemon's own output so far. */
  log(): string;
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`; resolves once it has exited. */
  terminate(graceMs: number): Promise<void>;
  /** Polls `ready` every `intervalMs` until it answers true; on exit or after `timeoutMs`, runs `cleanup` and throws. */
  waitUntilReady(options: {
    name: string;
    waitingFor: string;
    ready: () => Promise<boolean>;
    timeoutMs: number;
    intervalMs: number;
    cleanup: () => Promise<void>;
  }): Promise<void>;
}

export function spawnDaemon(command: string, args: string[]): DaemonProcess {
  let output = "";
  const child: ChildProcess = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
  const collect = (d: Buffer) => {
    output = (output + d.toString()).slice(-20_000);
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  let exited = false;
  const exitedPromise = new Promise<void>((resolve) => child.once("exit", () => ((exited = true), resolve())));
  return {
    log: () => output,
    async terminate(graceMs) {
      if (exited) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exitedPromise;
      clearTimeout(timer);
    },
    async waitUntilReady({ name, waitingFor, ready, timeoutMs, intervalMs, cleanup }) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        if (exited) {
          await cleanup();
          throw new Error(`${name} exited during start:\n${output}`);
        }
        if (await ready()) return;
        if (Date.now() > deadline) {
          await cleanup();
          throw new Error(`${name} did not ${waitingFor} within ${timeoutMs / 1000} s:\n${output}`);
        }
        await new Promise((r) => setTimeout(r, intervalMs));
      }
    },
  };
}
