/**
 * `withPipPackages` / `withRequirements` without running anything in the image: pip on the build host
 * resolves and unpacks binary wheels for the image's platform and Python into a scratch directory
 *
 *   python3 -m pip install --isolated --target <dir> --platform manylinux2014_<machine>
 *     --python-version X.Y --implementation cp --abi cpXY --only-binary=:all: --no-compile
 *     [--index-url …] [--extra-index-url …] [--pre] [extraArgs…] -- <packages> | -r <file>
 *
 * and that directory becomes the layer: packages under the image's site directory, console scripts in
 * /usr/local/bin with their shebang set to the image's interpreter (pythonTarget.ts), each RECORD's
 * script rows pointed at where the scripts now are (with their new hash), no `.pyc` of the host.
 * `--isolated`: the host's pip config and PIP_* variables do not apply — as in a Docker build, where
 * the host's are not seen either; the spec's index options do.
 *
 * A package with no wheel for the platform (an sdist only, a compiled package without a manylinux
 * wheel) is an error naming it and the platform: such a package needs a builder that runs steps.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { lstat, readFile, readdir } from "node:fs/promises";
import { join, posix } from "node:path";
import { BuildFailedError, type Layer, type PipOptions } from "@kiln/core";
import { compareUtf8 } from "@kiln/core/plugin";
import type { PythonTarget } from "./pythonTarget.js";
import { pipPlatformTag } from "./pythonTarget.js";
import type { PlannedEntry } from "./sourceLayers.js";
import { lastLines } from "./streamsAndText.js";

const PIP_DEADLINE_MS = 10 * 60_000;

export type PythonLayer = Extract<Layer, { kind: "pipPackages" } | { kind: "requirements" }>;

export interface ResolvePythonOptions {
  layer: PythonLayer;
  /** For `requirements`: the (verified) requirements file on this machine. */
  requirementsFile?: string;
  target: PythonTarget;
  platform: string;
  /** Empty directory pip installs into. */
  dir: string;
  env: NodeJS.ProcessEnv;
  signal?: AbortSignal;
}

/** The pip command line (argv after the interpreter). */
export function pipArguments(options: Omit<ResolvePythonOptions, "env" | "signal">): string[] {
  const { layer, target, platform, dir } = options;
  const tag = pipPlatformTag(platform);
  if (!tag) throw noWheelPlatform(platform);
  const xy = `${target.version[0]}.${target.version[1]}`;
  const pip = layer as PipOptions;
  const args = [
    "-m",
    "pip",
    "install",
    "--isolated",
    "--disable-pip-version-check",
    "--no-input",
    "--no-compile",
    "--target",
    dir,
    "--platform",
    tag,
    "--python-version",
    xy,
    "--implementation",
    "cp",
    "--abi",
    `cp${target.version[0]}${target.version[1]}`,
    "--only-binary=:all:",
  ];
  if (pip.indexUrl !== undefined) args.push("--index-url", pip.indexUrl);
  for (const url of pip.extraIndexUrls ?? []) args.push("--extra-index-url", url);
  if (pip.pre) args.push("--pre");
  args.push(...(pip.extraArgs ?? []));
  if (layer.kind === "requirements") args.push("-r", options.requirementsFile!);
  else args.push("--", ...layer.packages);
  return args;
}

export async function resolvePythonPackages(options: ResolvePythonOptions): Promise<void> {
  const python = options.env.KILN_PYTHON || "python3";
  const args = pipArguments(options);
  const what = options.layer.kind === "requirements" ? `withRequirements ${options.layer.name}` : `withPipPackages ${options.layer.packages.join(" ")}`;
  const result = await new Promise<{ code: number | null; stderr: string; error?: Error }>((done) => {
    const child = execFile(
      python,
      args,
      { env: options.env, maxBuffer: 64 * 1024 * 1024, timeout: PIP_DEADLINE_MS, signal: options.signal },
      (error, _stdout, stderr) => {
        done({ code: error ? (((error as { code?: unknown }).code as number) ?? 1) : 0, stderr: String(stderr), ...(error ? { error } : {}) });
      },
    );
    child.stdin?.end();
  });
  options.signal?.throwIfAborted();
  if (result.code === 0) return;
  if ((result.error as NodeJS.ErrnoException | undefined)?.code === "ENOENT") {
    throw new BuildFailedError(`The oci builder needs Python with pip on this machine to resolve ${what}; ${python} was not found`, {
      hint: 'Install python3 and python3-pip (or set KILN_PYTHON to an interpreter that has pip), or build with a builder that runs steps (builder: "docker").',
      details: { python },
    });
  }
  const missing = /No matching distribution found for ([^\s]+)/.exec(result.stderr)?.[1];
  const tag = pipPlatformTag(options.platform);
  const xy = options.target.version.join(".");
  if (missing) {
    throw new BuildFailedError(
      `No wheel of ${missing} for ${options.platform} (${tag}, CPython ${xy}) in the package index: the oci builder installs binary wheels only`,
      {
        hint: `${missing} needs building from source (or has no ${options.platform} wheel): build this image with a builder that runs steps (builder: "docker").`,
        details: { package: missing, platform: options.platform, pipPlatform: tag, python: xy, layer: what },
      },
    );
  }
  throw new BuildFailedError(`pip could not resolve ${what} for ${options.platform} (CPython ${xy}): ${lastLines(result.stderr, 3, 600)}`, {
    hint: 'Check the package names and the index options; packages that need compiling need a builder that runs steps (builder: "docker").',
    details: { platform: options.platform, python: xy, layer: what },
  });
}

/**
 * The layer's entries from pip's target directory: `bin/*` → scriptsDir (shebang rewritten), the
 * rest → siteDir; `__pycache__`/`.pyc` left out; RECORD rows of scripts rewritten. Root-owned, modes
 * 0755 for directories and executables, 0644 otherwise; mtime the build epoch.
 */
export async function pythonLayerEntries(dir: string, target: PythonTarget, mtime: number): Promise<PlannedEntry[]> {
  const site = strip(target.siteDir);
  const scripts = strip(target.scriptsDir);
  const rewritten = new Map<string, Buffer>(); // pip's RECORD path of a script → its new bytes
  const entries: PlannedEntry[] = [];
  const dirEntry = (name: string): PlannedEntry => ({ header: { name, type: "directory", mode: 0o755, uid: 0, gid: 0, mtime } });
  entries.push(dirEntry(site));
  const files = await listFiles(dir);
  if (files.some((f) => f.path.startsWith("bin/"))) entries.push(dirEntry(scripts));
  for (const file of files) {
    if (file.path.startsWith("bin/")) {
      const name = file.path.slice(4);
      if (file.dir) {
        entries.push(dirEntry(`${scripts}/${name}`));
        continue;
      }
      const data = rewriteShebang(await readFile(join(dir, file.path)), target.interpreter);
      rewritten.set(`../../bin/${name}`, data);
      entries.push({ header: { name: `${scripts}/${name}`, type: "file", mode: 0o755, uid: 0, gid: 0, mtime, size: data.length }, data });
      continue;
    }
    if (file.dir) entries.push(dirEntry(`${site}/${file.path}`));
    else
      entries.push({
        header: { name: `${site}/${file.path}`, type: "file", mode: file.executable ? 0o755 : 0o644, uid: 0, gid: 0, mtime, size: file.size },
        hostPath: join(dir, file.path),
      });
  }
  // RECORD rows `../../bin/<script>` (pip's --target layout) → the script's path relative to siteDir.
  for (const entry of entries) {
    if (!entry.hostPath || !/\.dist-info\/RECORD$/.test(entry.header.name)) continue;
    const text = await readFile(entry.hostPath, "utf8");
    if (!text.includes("../../bin/")) continue;
    const rows = text.split("\n").map((row) => {
      const path = row.split(",", 1)[0]!;
      const data = rewritten.get(path);
      if (!data) return row;
      const moved = posix.relative(target.siteDir, posix.join(target.scriptsDir, path.slice("../../bin/".length)));
      return `${moved},sha256=${createHash("sha256").update(data).digest("base64url")},${data.length}`;
    });
    const data = Buffer.from(rows.join("\n"));
    delete entry.hostPath;
    entry.data = data;
    entry.header = { ...entry.header, size: data.length };
  }
  return entries.sort((a, b) => compareUtf8(a.header.name, b.header.name));
}

interface ListedFile {
  path: string;
  dir: boolean;
  executable: boolean;
  size: number;
}

async function listFiles(root: string, prefix = ""): Promise<ListedFile[]> {
  const out: ListedFile[] = [];
  const names = (await readdir(join(root, prefix))).sort(compareUtf8);
  for (const name of names) {
    if (name === "__pycache__" || name.endsWith(".pyc")) continue;
    const path = prefix === "" ? name : `${prefix}/${name}`;
    const info = await lstat(join(root, path));
    if (info.isDirectory()) {
      out.push({ path, dir: true, executable: true, size: 0 });
      out.push(...(await listFiles(root, path)));
    } else if (info.isFile()) out.push({ path, dir: false, executable: (info.mode & 0o111) !== 0, size: info.size });
  }
  return out;
}

/** pip writes the host interpreter into a script's shebang (or a /bin/sh trampoline for a long path). */
export function rewriteShebang(data: Buffer, interpreter: string): Buffer {
  const text = data.toString("utf8");
  if (!text.startsWith("#!")) return data;
  const trampoline = /^#!\/bin\/sh\n'''exec' .*\n' '''\n/.exec(text);
  if (trampoline) return Buffer.from(`#!${interpreter}\n${text.slice(trampoline[0].length)}`);
  const end = text.indexOf("\n");
  const first = end < 0 ? text : text.slice(0, end);
  if (!/python/.test(first)) return data;
  return Buffer.from(`#!${interpreter}${end < 0 ? "" : text.slice(end)}`);
}

function strip(path: string): string {
  return path.replace(/^\/+/, "").replace(/\/+$/, "");
}

function noWheelPlatform(platform: string): BuildFailedError {
  return new BuildFailedError(`The oci builder has no wheel platform for ${platform}`, {
    hint: 'Build Python packages for this platform with a builder that runs steps (builder: "docker").',
    details: { platform },
  });
}
