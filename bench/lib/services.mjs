// Services the benchmarks start for themselves: a busybox base image made locally (never pulled) and a
// real registry (Debian's docker-registry, distribution 2.8) on a free loopback port.
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** `tag` in the local daemon: FROM scratch + the host's static busybox with its applets (classic builder). */
export async function ensureBusyboxImage(tag, work) {
  try {
    await run("docker", ["image", "inspect", tag]);
    return;
  } catch {}
  const dir = path.join(work, "busybox");
  mkdirSync(dir, { recursive: true });
  copyFileSync("/bin/busybox", path.join(dir, "busybox"));
  writeFileSync(
    path.join(dir, "Dockerfile"),
    'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\nENV PATH=/usr/sbin:/usr/bin:/sbin:/bin\n',
  );
  await run("docker", ["build", "-q", "-t", tag, dir], { env: { ...process.env, DOCKER_BUILDKIT: "0" } });
}

export function freePort() {
  return new Promise((res) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => res(port));
    });
  });
}

/** An open registry storing under `dir`; `{ host, url, child }` once it answers /v2/ (10 s at most). */
export async function startRegistry(dir) {
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const config = `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${dir}/data\nhttp:\n  addr: 127.0.0.1:${port}\n  secret: ${randomBytes(8).toString("hex")}\n`;
  writeFileSync(path.join(dir, "config.yml"), config);
  const child = spawn("/usr/bin/docker-registry", ["serve", path.join(dir, "config.yml")], { stdio: "ignore" });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`${url}/v2/`)).ok) return { host: `127.0.0.1:${port}`, url, child };
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill();
  throw new Error("docker-registry did not start");
}
