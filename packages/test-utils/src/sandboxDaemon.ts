/**
 * What every throw-away dockerd of the test services shares: its own bridge (never `--bridge=none`,
 * which deletes docker0 — see tlsDaemon.ts), roots and pidfile under one directory, no iptables
 * changes; and the clean-up of all of that.
 */
import { execFile } from "node:child_process";
import { rm } from "node:fs/promises";
import { join } from "node:path";

/** A bridge of its own (name ≤ 15 characters) with the given `a.b.c.1/24` address, up. */
export async function createBridge(name: string, cidr: string): Promise<void> {
  await run("ip", ["link", "add", "name", name, "type", "bridge"]);
  await run("ip", ["addr", "add", cidr, "dev", name]);
  await run("ip", ["link", "set", name, "up"]);
}

/** dockerd flags for a daemon living in `root` on `bridge`, touching nothing of the machine's. */
export function sandboxDaemonArgs(root: string, bridge: string): string[] {
  return [
    `--data-root=${join(root, "data")}`,
    `--exec-root=${join(root, "exec")}`,
    `--pidfile=${join(root, "docker.pid")}`,
    `--bridge=${bridge}`,
    "--iptables=false",
    "--ip6tables=false",
    "--userland-proxy=false",
  ];
}

/** After the daemon stopped: lazily unmount what it left under `root`, remove `root` and the bridge. */
export async function removeSandbox(root: string, bridge: string): Promise<void> {
  await run("sh", ["-c", `grep -o " ${root}[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l`]).catch(() => undefined);
  await rm(root, { recursive: true, force: true }).catch(() => undefined);
  await run("ip", ["link", "delete", bridge]).catch(() => undefined);
}

/** A command's stdout; its stderr in the error when it fails. */
export function run(command: string, args: string[], cwd?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { cwd }, (error, stdout, stderr) =>
      error ? reject(new Error(`${command} ${args.join(" ")} failed: ${stderr || error.message}`)) : resolve(stdout),
    );
  });
}
