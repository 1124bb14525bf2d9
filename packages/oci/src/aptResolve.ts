/**
 * `withAptPackages` resolved with this machine's apt against the IMAGE's package state — never the
 * host's: apt runs with a private configuration (APT_CONFIG) in the build's scratch directory:
 *
 * - `Dir::State::status` → the image's /var/lib/dpkg/status (the base's, plus earlier apt layers);
 * - `APT::Architecture` → the target platform's dpkg architecture, `APT::Architectures` → it and the
 *   foreign architectures the base's dpkg knows (/var/lib/dpkg/arch);
 * - sources, keyrings and pinning: the base's own /etc/apt/sources.list(.d), trusted.gpg(.d) and
 *   preferences(.d) — what `apt-get install` in the image would use — with `Signed-By` paths pointed
 *   at copies of the base's keyrings. A base with no sources at all gets this machine's, but only
 *   when both are the same Debian release (os-release VERSION_CODENAME); otherwise it is an error;
 * - lists, caches, the lock files and logs: in the scratch directory; `Dir::Bin::dpkg` points nowhere,
 *   so dpkg on this machine never runs;
 * - no apt.conf(.d) of the base or of this machine is read (either may hold hooks such as
 *   `APT::Update::Post-Invoke` that would run commands here), except this machine's `Acquire::*`
 *   settings — how it reaches mirrors: proxies, timeouts, validity checks (`apt-config dump`);
 * - `APT::Install-Recommends false`, as the Docker builder's `--no-install-recommends`.
 *
 * Then `apt-get update`, `apt-get install --simulate` (the plan: only new packages; one that would
 * upgrade or remove a package of the base is an error — the oci builder only adds files), and
 * `apt-get download name:arch=version…` of exactly that plan.
 */
import { execFile } from "node:child_process";
import { createHash, type Hash } from "node:crypto";
import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import { join, posix } from "node:path";
import { BuildFailedError } from "@kiln/core";
import type { AptHostTools } from "./aptHost.js";
import { restoreAptLists, saveAptLists } from "./aptListsCache.js";
import { checkBaseSource, UnsafeAptSourceError } from "./aptSourceCheck.js";
import type { DebianArch } from "./debianArch.js";
import type { DebianRootView } from "./debianRootView.js";
import { lastLines } from "./streamsAndText.js";

const UPDATE_DEADLINE_MS = 5 * 60_000;
const PLAN_DEADLINE_MS = 2 * 60_000;
const DOWNLOAD_DEADLINE_MS = 10 * 60_000;

export interface PlannedPackage {
  name: string;
  arch: string;
  version: string;
}

export interface AptResolveOptions {
  packages: readonly string[];
  view: DebianRootView;
  /** The image's dpkg status as it stands before this layer. */
  status: Buffer;
  arch: DebianArch;
  /** An empty scratch directory of this layer. */
  dir: string;
  tools: AptHostTools;
  env: NodeJS.ProcessEnv;
  baseRef: string;
  /** Where apt's lists are kept between builds (aptListsCache.ts); none: downloaded every time. */
  listsCache?: string;
  signal?: AbortSignal;
}

export interface AptResolution {
  plan: PlannedPackage[];
  /** The downloaded .deb files, sorted. */
  debs: string[];
  /** Where the sources came from. */
  sources: "base" | "host";
}

export async function resolveAptPackages(options: AptResolveOptions): Promise<AptResolution> {
  const { dir, tools, signal } = options;
  const what = `withAptPackages ${options.packages.join(" ")}`;
  const config = await writeAptRoot(options);
  const env = { ...options.env, APT_CONFIG: config.file, DEBIAN_FRONTEND: "noninteractive", LC_ALL: "C" };

  const listsDir = join(dir, "state", "lists");
  if (options.listsCache && config.listsKey) await restoreAptLists(options.listsCache, config.listsKey, listsDir);
  const update = await run(tools.aptGet, ["-q", "update"], env, dir, UPDATE_DEADLINE_MS, signal);
  if (update.code !== 0 || /^(E|W): (Failed to fetch|The repository|GPG error|Some index files failed)/m.test(update.stderr)) {
    throw new BuildFailedError(
      `apt-get update failed for ${what} (sources from the ${config.sources === "base" ? "base image" : "build machine"}): ${lastLines(update.stderr || update.stdout)}`,
      {
        hint: "Check that this machine reaches the image's apt mirrors (proxies: set Acquire::http::Proxy in this machine's apt configuration, or http_proxy), or build with a builder that runs steps.",
        details: { layer: what, base: options.baseRef, sources: config.sources },
      },
    );
  }
  if (options.listsCache && config.listsKey) await saveAptLists(options.listsCache, config.listsKey, listsDir);

  const simulate = await run(
    tools.aptGet,
    ["-q", "--simulate", "--no-install-recommends", "install", "--", ...options.packages],
    env,
    dir,
    PLAN_DEADLINE_MS,
    signal,
  );
  if (simulate.code !== 0) {
    const missing =
      /Unable to locate package (\S+)/.exec(simulate.stderr)?.[1] ?? /Package '?([^' ]+)'? has no installation candidate/.exec(simulate.stderr)?.[1];
    throw new BuildFailedError(
      missing
        ? `apt cannot find ${missing} for ${options.arch.arch} in the base image's sources (${what})`
        : `apt cannot install ${what} on the base image ${options.baseRef} (${options.arch.arch}): ${lastLines(simulate.stderr || simulate.stdout)}`,
      {
        hint: missing
          ? "Check the package name and that the base's apt sources carry it for this architecture."
          : "Check the package names and versions against the base's Debian release.",
        details: { layer: what, base: options.baseRef, arch: options.arch.arch, ...(missing ? { package: missing } : {}) },
      },
    );
  }
  const { plan, changes } = parseSimulation(simulate.stdout, options.arch.arch);
  if (changes.length > 0) {
    throw new BuildFailedError(
      `Installing ${what} would change packages of the base image ${options.baseRef}: ${changes.join(", ")}; the oci builder only adds packages`,
      {
        hint: 'Use a base image with current packages, pin versions the base can take as they are, or build with a builder that runs steps (builder: "docker" or "buildkit").',
        details: { layer: what, base: options.baseRef, changes },
      },
    );
  }
  const debsDir = join(dir, "debs");
  await mkdir(debsDir, { recursive: true });
  if (plan.length === 0) return { plan, debs: [], sources: config.sources };
  const download = await run(
    tools.aptGet,
    ["-q", "download", "--", ...plan.map((p) => (p.arch === "all" ? `${p.name}=${p.version}` : `${p.name}:${p.arch}=${p.version}`))],
    env,
    debsDir,
    DOWNLOAD_DEADLINE_MS,
    signal,
  );
  if (download.code !== 0) {
    throw new BuildFailedError(`apt-get download failed for ${what}: ${lastLines(download.stderr || download.stdout)}`, {
      hint: "Check that this machine reaches the image's apt mirrors, and try again.",
      details: { layer: what, base: options.baseRef },
    });
  }
  const debs = (await readdir(debsDir))
    .filter((f) => f.endsWith(".deb"))
    .sort()
    .map((f) => join(debsDir, f));
  if (debs.length !== plan.length) {
    throw new BuildFailedError(`apt-get download left ${debs.length} .deb files for the ${plan.length} packages of ${what}`, {
      hint: "Try again; if it persists, build with a builder that runs steps.",
      details: { layer: what, plan: plan.map((p) => `${p.name}:${p.arch}=${p.version}`) },
    });
  }
  return { plan, debs, sources: config.sources };
}

/** `Inst name[:arch] [old] (version release [arch])` lines; `Remv` and upgrades are `changes`. */
export function parseSimulation(stdout: string, nativeArch: string): { plan: PlannedPackage[]; changes: string[] } {
  const plan: PlannedPackage[] = [];
  const changes: string[] = [];
  for (const line of stdout.split("\n")) {
    const inst = /^Inst (\S+) (?:\[(\S+)\] )?\((\S+)(?: .*?)?(?: \[([^\]\s]+)\])?\)/.exec(line);
    if (inst) {
      const [, rawName, old, version, archField] = inst;
      const [name, nameArch] = rawName!.split(":") as [string, string?];
      const arch = archField ?? nameArch ?? nativeArch;
      if (old !== undefined) changes.push(`${name}:${arch} ${old} → ${version}`);
      else plan.push({ name, arch, version: version! });
      continue;
    }
    const remove = /^Remv (\S+)(?: \[(\S+)\])?/.exec(line);
    if (remove) changes.push(`${remove[1]} removed`);
  }
  return { plan, changes };
}

interface AptRoot {
  file: string;
  sources: "base" | "host";
  /** What the lists depend on, hashed (base sources only: this machine's may change under us). */
  listsKey?: string;
}

/** The private apt directory and its configuration file. */
async function writeAptRoot(options: AptResolveOptions): Promise<AptRoot> {
  const { dir, view, arch } = options;
  const etc = join(dir, "etc");
  for (const sub of [
    "etc/sources.list.d",
    "etc/trusted.gpg.d",
    "etc/preferences.d",
    "etc/apt.conf.d",
    "state/lists/partial",
    "cache/archives/partial",
    "dpkg",
    "log",
    "keyrings",
  ]) {
    await mkdir(join(dir, sub), { recursive: true });
  }
  await writeFile(join(dir, "dpkg", "status"), options.status);
  await writeFile(join(etc, "apt.conf"), "");

  // Sources: the base's (Signed-By pointed at copies of the base's keyrings), else this machine's.
  const baseSources = collectBaseSources(view);
  let sources: "base" | "host" = "base";
  const listsHash = createHash("sha256").update("kiln-oci-apt-lists-v1\n");
  const dirs: Record<string, string> = {};
  if (baseSources.some((s) => hasEntries(s.name, s.text))) {
    for (const source of baseSources) checkBaseSource(source.name, source.text, options.baseRef);
    for (const source of baseSources) {
      listsHash.update(`source ${source.name}\n${source.text}\n`);
      const text = await pointSignedBy(source.text, view, join(dir, "keyrings"), listsHash, source.name);
      await writeFile(source.name === "sources.list" ? join(etc, "sources.list") : join(etc, "sources.list.d", source.name), text);
    }
    const trusted = view.read("etc/apt/trusted.gpg");
    if (trusted) {
      listsHash.update("trusted.gpg\n").update(trusted);
      await writeFile(join(etc, "trusted.gpg"), trusted);
    }
    for (const [name, data] of view.listKept("etc/apt/trusted.gpg.d")) {
      if (!/\.(gpg|asc)$/.test(name)) continue;
      listsHash.update(`trusted.gpg.d/${name}\n`).update(data);
      await writeFile(join(etc, "trusted.gpg.d", name), data);
    }
    Object.assign(dirs, {
      "Dir::Etc::sourcelist": join(etc, "sources.list"),
      "Dir::Etc::sourceparts": join(etc, "sources.list.d"),
      "Dir::Etc::trusted": join(etc, "trusted.gpg"),
      "Dir::Etc::trustedparts": join(etc, "trusted.gpg.d"),
    });
  } else {
    const baseCodename = codenameOf(view.read("etc/os-release") ?? view.read("usr/lib/os-release"));
    const hostCodename = codenameOf(await readFile("/etc/os-release").catch(() => undefined));
    if (baseCodename === undefined || baseCodename !== hostCodename) {
      throw new BuildFailedError(
        `The base image ${options.baseRef} has no apt sources (/etc/apt/sources.list, sources.list.d) and is ${baseCodename ? `Debian ${baseCodename}` : "of an unknown release"}, this machine is ${hostCodename ?? "of an unknown release"}: the oci builder cannot tell where its packages come from`,
        {
          hint: "Use a base image that carries its apt sources, copy them in with a builder that runs steps, or build on a machine of the same Debian release.",
          details: { base: options.baseRef, baseRelease: baseCodename ?? null, hostRelease: hostCodename ?? null },
        },
      );
    }
    sources = "host";
    Object.assign(dirs, {
      "Dir::Etc::sourcelist": "/etc/apt/sources.list",
      "Dir::Etc::sourceparts": "/etc/apt/sources.list.d",
      "Dir::Etc::trusted": "/etc/apt/trusted.gpg",
      "Dir::Etc::trustedparts": "/etc/apt/trusted.gpg.d",
    });
  }
  if (view.read("etc/apt/preferences")) await writeFile(join(etc, "preferences"), view.read("etc/apt/preferences")!);
  for (const [name, data] of view.listKept("etc/apt/preferences.d")) await writeFile(join(etc, "preferences.d", name), data);

  const foreign = (view.read("var/lib/dpkg/arch")?.toString("utf8") ?? "").split(/\s+/).filter((a) => a !== "" && a !== arch.arch);
  const acquire = await hostAcquireSettings(options.tools.aptConfig, options.env, options.signal);
  const lines = [
    "// Written by @kiln/oci for one build: the image's package state, never this machine's.",
    ...acquire,
    `Dir "${dir}/";`,
    `Dir::State "${join(dir, "state")}/";`,
    `Dir::State::lists "lists/";`,
    `Dir::State::status "${join(dir, "dpkg", "status")}";`,
    `Dir::Cache "${join(dir, "cache")}/";`,
    `Dir::Cache::archives "archives/";`,
    `Dir::Log "${join(dir, "log")}/";`,
    `Dir::Etc "${etc}/";`,
    `Dir::Etc::main "${join(etc, "apt.conf")}";`,
    `Dir::Etc::parts "${join(etc, "apt.conf.d")}/";`,
    `Dir::Etc::preferences "${join(etc, "preferences")}";`,
    `Dir::Etc::preferencesparts "${join(etc, "preferences.d")}/";`,
    ...Object.entries(dirs).map(([key, value]) => `${key} "${value}";`),
    `Dir::Bin::dpkg "/nonexistent/kiln-oci-never-runs-dpkg";`,
    `APT::Architecture "${arch.arch}";`,
    `APT::Architectures { ${[arch.arch, ...foreign].map((a) => `"${a}";`).join(" ")} };`,
    `APT::Install-Recommends "false";`,
    `APT::Install-Suggests "false";`,
    `Acquire::Languages "none";`,
    ...(process.getuid?.() === 0 ? [`APT::Sandbox::User "root";`] : []),
    "",
  ];
  if (/["\n]/.test(dir)) throw new Error(`resolveAptPackages: scratch directory ${JSON.stringify(dir)} cannot be written into an apt configuration`);
  const file = join(dir, "apt.conf");
  await writeFile(file, lines.join("\n"));
  if (sources !== "base") return { file, sources };
  listsHash.update(`architectures ${[arch.arch, ...foreign].join(" ")}\n${acquire.join("\n")}\n`);
  return { file, sources, listsKey: listsHash.digest("hex") };
}

interface SourceFile {
  name: string;
  text: string;
}

function collectBaseSources(view: DebianRootView): SourceFile[] {
  const out: SourceFile[] = [];
  const main = view.read("etc/apt/sources.list");
  if (main) out.push({ name: "sources.list", text: main.toString("utf8") });
  for (const [name, data] of view.listKept("etc/apt/sources.list.d")) {
    if (name.endsWith(".list") || name.endsWith(".sources")) out.push({ name, text: data.toString("utf8") });
  }
  return out;
}

export function hasEntries(name: string, text: string): boolean {
  if (name.endsWith(".sources")) {
    return text.split(/\n\s*\n/).some((stanza) => /^Types:\s*\S/im.test(stanza) && !/^Enabled:\s*no\b/im.test(stanza));
  }
  return text.split("\n").some((line) => /^\s*deb(-src)?\s/.test(line));
}

/**
 * Absolute keyring paths in Signed-By (deb822 field or one-line `[signed-by=…]`) → copies of the base's
 * files. A path the image does not hold is an error: left as it is, apt would read this machine's file.
 */
export async function pointSignedBy(text: string, view: DebianRootView, keyrings: string, hash: Hash, name = "sources.list"): Promise<string> {
  const paths = new Set<string>();
  for (const match of text.matchAll(/^Signed-By:[ \t]*(.*)$/gim)) for (const token of match[1]!.split(/[\s,]+/)) if (token.startsWith("/")) paths.add(token);
  for (const match of text.matchAll(/signed-by=([^\s\]]+)/gi)) for (const token of match[1]!.split(",")) if (token.startsWith("/")) paths.add(token);
  let out = text;
  for (const path of [...paths].sort((a, b) => b.length - a.length)) {
    const data = view.read(path.slice(1));
    if (!data) {
      // Only in comments: apt never reads it.
      const line = text.split("\n").findIndex((l) => l.includes(path) && !l.trimStart().startsWith("#")) + 1;
      if (line === 0) continue;
      const file = name === "sources.list" ? "/etc/apt/sources.list" : `/etc/apt/sources.list.d/${name}`;
      throw new UnsafeAptSourceError(`The base image's apt source ${file} line ${line} is Signed-By ${path}, which is not in the image`, {
        hint: "Add the keyring to the base image at that path (or fix the path): the oci builder only uses keyrings from the image, never this machine's.",
        details: { file, line, keyring: path },
      });
    }
    hash.update(`signed-by ${path}\n`).update(data);
    const copy = join(keyrings, posix.normalize(path).slice(1).replace(/\//g, "_"));
    await writeFile(copy, data);
    out = out.split(path).join(copy);
  }
  return out;
}

function codenameOf(osRelease: Buffer | undefined): string | undefined {
  const text = osRelease?.toString("utf8") ?? "";
  const match = /^VERSION_CODENAME=["']?([^"'\n]+)["']?$/m.exec(text);
  return match?.[1]?.trim() || undefined;
}

/** This machine's `Acquire::*` settings (proxies, timeouts, validity checks), as apt-config prints them. */
async function hostAcquireSettings(aptConfig: string, env: NodeJS.ProcessEnv, signal?: AbortSignal): Promise<string[]> {
  const hostEnv = { ...env };
  delete hostEnv.APT_CONFIG;
  const result = await run(aptConfig, ["dump"], hostEnv, undefined, PLAN_DEADLINE_MS, signal);
  if (result.code !== 0) return [];
  return result.stdout.split("\n").filter((line) => /^Acquire::\S+ ".*";$/.test(line));
}

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv, cwd: string | undefined, timeout: number, signal?: AbortSignal): Promise<RunResult> {
  return new Promise((done, fail) => {
    const child = execFile(command, args, { env, ...(cwd ? { cwd } : {}), maxBuffer: 64 * 1024 * 1024, timeout, signal }, (error, stdout, stderr) => {
      if (signal?.aborted) return fail(signal.reason);
      if (error && typeof (error as NodeJS.ErrnoException).code === "string") {
        return fail(
          new BuildFailedError(`Could not run ${command}: ${error.message}`, {
            hint: "The oci builder needs apt-get, apt-config and dpkg-deb on this machine for withAptPackages; or build with a builder that runs steps.",
            details: { command },
          }),
        );
      }
      if (error && (error as { killed?: boolean }).killed) {
        return done({
          code: 124,
          stdout: String(stdout),
          stderr: `${String(stderr)}\n${command} ${args[1] ?? ""} did not finish within ${Math.round(timeout / 1000)} s`,
        });
      }
      done({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout: String(stdout), stderr: String(stderr) });
    });
    child.stdin?.end();
  });
}
