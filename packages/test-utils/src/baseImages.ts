/**
 * Base images made on this machine, with no registry and no internet:
 * - busybox: `FROM scratch` + Debian's static /bin/busybox, applets installed as symlinks;
 * - Debian python: a `debootstrap --variant=minbase bookworm` rootfs with python3 + pip from Debian's
 *   mirror, imported with `docker import`. Slow to make (a minute or more), so it is built once per
 *   machine (under a cross-process lock) and reused; it stands in for `python:3.11-slim-bookworm`.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { copyFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { docker, dockerWithStdin, localImageExists, withMachineLock } from "./docker.js";

export const BUSYBOX_IMAGE = "kiln-test/busybox:1.35";
export const DEBIAN_PYTHON_IMAGE = "kiln-test/python:3.11-slim-bookworm";
const DEBIAN_MIRROR = "http://deb.debian.org/debian";

/** A busybox image (`sh`, `cat`, `ls`, … on PATH). Returns its reference. */
export async function ensureBusyboxImage(tag = BUSYBOX_IMAGE): Promise<string> {
  if (await localImageExists(tag)) return tag;
  return withMachineLock(`image-${tag.replace(/[^a-z0-9]+/gi, "_")}`, async () => {
    if (await localImageExists(tag)) return tag;
    const dir = await mkdtemp(join(tmpdir(), "kiln-busybox-"));
    try {
      await copyFile("/bin/busybox", join(dir, "busybox"));
      await writeFile(
        join(dir, "Dockerfile"),
        [
          "FROM scratch",
          "COPY busybox /bin/busybox",
          'RUN ["/bin/busybox", "--install", "-s", "/bin"]',
          "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
          'CMD ["sh"]',
          "",
        ].join("\n"),
      );
      await docker(["build", "-q", "-t", tag, dir]);
      return tag;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}

/**
 * A Debian bookworm image with python3 (3.11) and pip, made once per machine. pip may install into
 * the system interpreter (EXTERNALLY-MANAGED removed), as it can in the official python images.
 */
export async function ensureDebianPythonImage(tag = DEBIAN_PYTHON_IMAGE): Promise<string> {
  if (await localImageExists(tag)) return tag;
  return withMachineLock(`image-${tag.replace(/[^a-z0-9]+/gi, "_")}`, async () => {
    if (await localImageExists(tag)) return tag;
    await ensureDebootstrap();
    const root = await mkdtemp(join("/var/tmp", "kiln-rootfs-"));
    try {
      await run("debootstrap", [
        "--variant=minbase",
        "--include=python3,python3-pip,ca-certificates",
        "bookworm",
        root,
        DEBIAN_MIRROR,
      ]);
      // Leave a rootfs like python:*-slim: pip usable system-wide, no caches or downloaded lists.
      await run("sh", [
        "-c",
        `rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED && rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/* "$1"/tmp/*`,
        "sh",
        root,
      ]);
      const tar = spawn("tar", ["-C", root, "--numeric-owner", "-c", "."], { stdio: ["ignore", "pipe", "inherit"] });
      await dockerWithStdin(
        [
          "import",
          "--change",
          "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
          "--change",
          "ENV LANG=C.UTF-8",
          "--change",
          'CMD ["python3"]',
          "--change",
          "LABEL dev.kiln.test-base=debootstrap-bookworm-python3",
          "-",
          tag,
        ],
        tar.stdout,
      );
      return tag;
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
}

async function ensureDebootstrap(): Promise<void> {
  if (existsSync("/usr/sbin/debootstrap")) return;
  // Normally installed by scripts/start-services.sh; install it here on a machine that skipped that.
  await run("apt-get", ["install", "-y", "-qq", "--no-install-recommends", "debootstrap"], { DEBIAN_FRONTEND: "noninteractive" });
}

function run(command: string, args: string[], env?: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (d: Buffer) => {
      err = (err + d.toString()).slice(-4000);
    });
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`${command} exited ${code}: ${err}`))));
  });
}
