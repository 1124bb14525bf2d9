/**
 * Base images made on this machine, with no registry and no internet:
 * - busybox: `FROM scratch` + Debian's static /bin/busybox, applets installed as symlinks;
 * - Debian python: a `debootstrap --variant=minbase bookworm` rootfs with python3 + pip from Debian's
 *   mirror, imported with `docker import`. Slow to make (a minute or more), so it is built once per
 *   machine (under a cross-process lock) and reused; it stands in for `python:3.11-slim-bookworm`.
 */
import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rename, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { RegistryClient } from "@kiln/core";
import { docker, dockerWithStdin, localImageExists, withMachineLock, type DockerCleanup } from "./docker.js";
import { digestOf, putTestManifest, uploadBlob } from "./registry.js";

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
      await run("debootstrap", ["--variant=minbase", "--include=python3,python3-pip,ca-certificates", "bookworm", root, DEBIAN_MIRROR]);
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

function run(command: string, args: string[], env?: NodeJS.ProcessEnv, cwd?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "pipe"], ...(cwd ? { cwd } : {}) });
    let err = "";
    child.stderr.on("data", (d: Buffer) => {
      err = (err + d.toString()).slice(-4000);
    });
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`${command} exited ${code}: ${err}`))));
  });
}

// ---- linux/arm64 under emulation ------------------------------------------------------------------

const execFileAsync = promisify(execFile);
const BINFMT_DIR = "/proc/sys/fs/binfmt_misc";
const ARM64_BUSYBOX = join(tmpdir(), "kiln-test-cache", "busybox-arm64");

/** Whether arm64 binaries run here: qemu-aarch64 registered with binfmt_misc and enabled. */
export async function arm64EmulationEnabled(): Promise<boolean> {
  const entry = await readFile(join(BINFMT_DIR, "qemu-aarch64"), "utf8").catch(() => "");
  return entry.split("\n")[0]?.trim() === "enabled";
}

/**
 * Makes arm64 binaries run on this (amd64) machine, as scripts/start-services.sh does: Debian's
 * qemu-user-static + binfmt-support, binfmt_misc mounted, the qemu-aarch64 handler enabled (its `F`
 * flag lets containers use it). Needs root; throws, saying what failed, where it cannot be done.
 */
export async function ensureArm64Emulation(): Promise<void> {
  if (await arm64EmulationEnabled()) return;
  await withMachineLock("arm64-emulation", async () => {
    if (await arm64EmulationEnabled()) return;
    if (!existsSync("/usr/bin/qemu-aarch64-static") || !existsSync("/usr/sbin/update-binfmts")) {
      await run("apt-get", ["install", "-y", "-qq", "--no-install-recommends", "qemu-user-static", "binfmt-support"], { DEBIAN_FRONTEND: "noninteractive" });
    }
    if (!existsSync(join(BINFMT_DIR, "register"))) await run("mount", ["binfmt_misc", "-t", "binfmt_misc", BINFMT_DIR]);
    await run("update-binfmts", ["--enable", "qemu-aarch64"]);
    if (!(await arm64EmulationEnabled())) throw new Error(`qemu-aarch64 is not enabled in ${BINFMT_DIR} after update-binfmts --enable qemu-aarch64`);
  });
}

/** Debian's static arm64 busybox (`busybox-static:arm64`), fetched from the Debian mirror once per machine. */
export async function arm64BusyboxBinary(): Promise<string> {
  if (existsSync(ARM64_BUSYBOX)) return ARM64_BUSYBOX;
  return withMachineLock("busybox-arm64", async () => {
    if (existsSync(ARM64_BUSYBOX)) return ARM64_BUSYBOX;
    const foreign = (await execFileAsync("dpkg", ["--print-foreign-architectures"])).stdout.split("\n");
    if (!foreign.includes("arm64")) {
      await run("dpkg", ["--add-architecture", "arm64"]);
      await run("apt-get", ["update", "-qq"]);
    }
    const dir = await mkdtemp(join(tmpdir(), "kiln-busybox-arm64-"));
    try {
      // As root, apt's download sandbox user could not write the temp dir: download as root.
      await run("apt-get", ["download", "-qq", "-o", "APT::Sandbox::User=root", "busybox-static:arm64"], {}, dir).catch(async () => {
        await run("apt-get", ["update", "-qq"]);
        await run("apt-get", ["download", "-qq", "-o", "APT::Sandbox::User=root", "busybox-static:arm64"], {}, dir);
      });
      const deb = (await readdir(dir)).find((f) => f.endsWith("_arm64.deb"));
      if (!deb) throw new Error("apt-get download busybox-static:arm64 left no .deb");
      await run("dpkg-deb", ["-x", join(dir, deb), join(dir, "root")]);
      await mkdir(join(tmpdir(), "kiln-test-cache"), { recursive: true });
      await copyFile(join(dir, "root", "bin", "busybox"), `${ARM64_BUSYBOX}.partial`);
      await chmod(`${ARM64_BUSYBOX}.partial`, 0o755);
      await rename(`${ARM64_BUSYBOX}.partial`, ARM64_BUSYBOX);
      return ARM64_BUSYBOX;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}

/**
 * Pushes a two-platform busybox (an OCI index of linux/amd64 and linux/arm64, each `FROM scratch` +
 * Debian's static busybox with its applets linked in /bin) to the open registry at `host`, over the
 * registry API — no emulation needed to make it. Returns `<host>/<repository>:<tag>`.
 */
export async function pushMultiArchBusybox(host: string, repository = "kiln-base/busybox-multiarch", tag = "1.35"): Promise<string> {
  const target = { url: `http://${host}`, authorizationFor: () => undefined };
  // Both builds are the same Debian version: the host's applet list holds for the arm64 one too.
  const applets = (await execFileAsync("/bin/busybox", ["--list"])).stdout.split("\n").filter((a) => /^[a-z0-9_.[-]+$/.test(a) && a !== "busybox");
  const manifests: unknown[] = [];
  for (const [architecture, binary] of [
    ["amd64", "/bin/busybox"],
    ["arm64", await arm64BusyboxBinary()],
  ] as const) {
    const root = await mkdtemp(join(tmpdir(), `kiln-busybox-${architecture}-`));
    try {
      await mkdir(join(root, "bin"));
      await copyFile(binary, join(root, "bin", "busybox"));
      await chmod(join(root, "bin", "busybox"), 0o755);
      for (const applet of applets) await symlink("busybox", join(root, "bin", applet)).catch(() => undefined);
      await mkdir(join(root, "tmp"), { mode: 0o1777 });
      await run("tar", ["-C", root, "--numeric-owner", "--owner=0", "--group=0", "--sort=name", "-cf", join(root, "layer.tar"), "bin", "tmp"]);
      const pushed = await pushOneLayerImage(target, repository, undefined, await readFile(join(root, "layer.tar")), {
        architecture,
        os: "linux",
        ...(architecture === "arm64" ? { variant: "v8" } : {}),
        config: { Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], Cmd: ["sh"] },
      });
      manifests.push({
        mediaType: pushed.mediaType,
        digest: pushed.digest,
        size: pushed.size,
        platform: { architecture, os: "linux", ...(architecture === "arm64" ? { variant: "v8" } : {}) },
      });
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  }
  const indexType = "application/vnd.oci.image.index.v1+json";
  await putTestManifest(target, repository, tag, { schemaVersion: 2, mediaType: indexType, manifests }, indexType);
  return `${host}/${repository}:${tag}`;
}

// ---- a linux/arm64 Debian python base, made without emulation -------------------------------------

const ARM64_PYTHON_ROOTFS = join(tmpdir(), "kiln-test-cache", "python3.11-bookworm-arm64.tar");
/**
 * Debian bookworm's python3.11 for arm64 and what its interpreter and standard library load, plus
 * busybox for a shell. Listed rather than resolved: apt-cache's closure of python3-minimal drags in
 * dpkg, perl and tar for their maintainer scripts, which are never run here.
 */
const ARM64_PYTHON_PACKAGES = [
  "busybox-static",
  "libc6",
  "gcc-12-base",
  "libgcc-s1",
  "zlib1g",
  "libexpat1",
  "libssl3",
  "libpython3.11-minimal",
  "python3.11-minimal",
  "python3-minimal",
  "libpython3.11-stdlib",
  "libffi8",
  "libbz2-1.0",
  "liblzma5",
  "libzstd1",
  "libsqlite3-0",
  "libuuid1",
  "libncursesw6",
  "libtinfo6",
  "libreadline8",
  "libnsl2",
  "libtirpc3",
  "libgssapi-krb5-2",
  "libkrb5-3",
  "libk5crypto3",
  "libkrb5support0",
  "libcom-err2",
  "libkeyutils1",
  "libdb5.3",
  "libcrypt1",
  "libmd0",
  "libselinux1",
  "libpcre2-8-0",
  "libacl1",
]
  .map((name) => `${name}:arm64`)
  .concat(["readline-common", "media-types", "libtirpc-common"]);

/**
 * The root filesystem (a tar) of a Debian bookworm python3.11 image for linux/arm64, made once per
 * machine and kept in the test cache. No emulation and no debootstrap second stage (a quarter of an
 * hour under qemu on a loaded machine): the arm64 packages are downloaded from Debian's mirror and
 * unpacked with dpkg-deb, as `debootstrap --foreign` would; their maintainer scripts do not run,
 * which running python3 does not need (the loader finds the libraries in their multiarch
 * directories without an ld.so.cache). busybox gives `sh` and the usual tools.
 */
export async function arm64PythonRootfs(): Promise<string> {
  if (existsSync(ARM64_PYTHON_ROOTFS)) return ARM64_PYTHON_ROOTFS;
  return withMachineLock("python-arm64-rootfs", async () => {
    if (existsSync(ARM64_PYTHON_ROOTFS)) return ARM64_PYTHON_ROOTFS;
    await ensureArm64AptArchitecture();
    const dir = await mkdtemp(join("/var/tmp", "kiln-python-arm64-"));
    try {
      const debs = join(dir, "debs");
      const root = join(dir, "root");
      await mkdir(debs);
      await mkdir(root);
      const download = () => run("apt-get", ["download", "-qq", "-o", "APT::Sandbox::User=root", ...ARM64_PYTHON_PACKAGES], {}, debs);
      await download().catch(async () => {
        await run("apt-get", ["update", "-qq"]);
        await download();
      });
      for (const deb of (await readdir(debs)).filter((f) => f.endsWith(".deb")).sort()) await run("dpkg-deb", ["-x", join(debs, deb), root]);
      // Both busybox builds are the same Debian version: the host's applet list holds for the arm64 one.
      const applets = (await execFileAsync("/bin/busybox", ["--list"])).stdout.split("\n").filter((a) => /^[a-z0-9_.[-]+$/.test(a) && a !== "busybox");
      for (const applet of applets) {
        if (!existsSync(join(root, "bin", applet)) && !existsSync(join(root, "usr", "bin", applet))) await symlink("busybox", join(root, "bin", applet));
      }
      await mkdir(join(root, "tmp"), { mode: 0o1777 });
      await chmod(join(root, "tmp"), 0o1777);
      await writeFile(join(root, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n");
      await writeFile(join(root, "etc", "group"), "root:x:0:\nnogroup:x:65534:\n");
      await mkdir(join(root, "root"), { mode: 0o700 });
      await mkdir(join(tmpdir(), "kiln-test-cache"), { recursive: true });
      await run("tar", ["-C", root, "--numeric-owner", "--owner=0", "--group=0", "--sort=name", "-cf", `${ARM64_PYTHON_ROOTFS}.partial`, "."]);
      await rename(`${ARM64_PYTHON_ROOTFS}.partial`, ARM64_PYTHON_ROOTFS);
      return ARM64_PYTHON_ROOTFS;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}

/**
 * Pushes the arm64 python base (arm64PythonRootfs, one uncompressed layer; config linux/arm64/v8 with
 * the env of Debian's python images) to the open registry at `host`, over the registry API — the
 * Engine's `docker import` cannot mark an image arm64. Returns `<host>/<repository>:<tag>`.
 */
export async function pushArm64PythonBase(host: string, repository = "kiln-base/python-arm64", tag = "3.11-bookworm"): Promise<string> {
  const target = { url: `http://${host}`, authorizationFor: () => undefined };
  await pushOneLayerImage(target, repository, tag, await readFile(await arm64PythonRootfs()), {
    architecture: "arm64",
    os: "linux",
    variant: "v8",
    config: { Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"], Cmd: ["python3"] },
  });
  return `${host}/${repository}:${tag}`;
}

/**
 * An OCI image of one uncompressed layer pushed over the registry API: `imageConfig` (architecture,
 * os, config…) gets the layer's diff_id as its rootfs; the manifest is put under `reference`, or under
 * its own digest when none is given (a platform's manifest, for an index).
 */
async function pushOneLayerImage(
  target: Parameters<typeof uploadBlob>[0],
  repository: string,
  reference: string | undefined,
  layer: Buffer,
  imageConfig: Record<string, unknown>,
) {
  const config = Buffer.from(JSON.stringify({ ...imageConfig, rootfs: { type: "layers", diff_ids: [digestOf(layer)] } }));
  const manifest = {
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...(await uploadBlob(target, repository, config)) },
    layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", ...(await uploadBlob(target, repository, layer)) }],
  };
  return putTestManifest(target, repository, reference ?? digestOf(JSON.stringify(manifest)), manifest, manifest.mediaType);
}

/** dpkg knows arm64 as a foreign architecture and apt has its package lists. */
async function ensureArm64AptArchitecture(): Promise<void> {
  const foreign = (await execFileAsync("dpkg", ["--print-foreign-architectures"])).stdout.split("\n");
  if (foreign.includes("arm64")) return;
  await run("dpkg", ["--add-architecture", "arm64"]);
  await run("apt-get", ["update", "-qq"]);
}

/**
 * A base whose tag moves, for pinBase tests: the local busybox pushed as `<host>/<repository>:1`,
 * then the tag moved (built and pushed again) to a busybox with a `/moved` marker file. Returns the
 * ref and the registry's digest before and after the move; the local tag is left to `cleanup`.
 */
export async function pushMovingBase(host: string, repository: string, cleanup: DockerCleanup): Promise<{ baseRef: string; original: string; moved: string }> {
  const busybox = await ensureBusyboxImage();
  const baseRef = cleanup.image(`${host}/${repository}:1`);
  const digestOfTag = async () => (await new RegistryClient({ useDockerConfig: false }).headManifest(baseRef))!.digest;
  await docker(["tag", busybox, baseRef]);
  await docker(["push", baseRef], { timeoutMs: 120_000 });
  const original = await digestOfTag();
  await docker(["build", "-t", baseRef, "-"], { input: `FROM ${busybox}\nRUN touch /moved\n`, timeoutMs: 120_000 });
  await docker(["push", baseRef], { timeoutMs: 120_000 });
  return { baseRef, original, moved: await digestOfTag() };
}
