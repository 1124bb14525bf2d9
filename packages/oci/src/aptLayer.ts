/**
 * One `withAptPackages` layer, made without running anything in the image: the packages apt plans
 * for the image (aptResolve.ts) are unpacked (debianPackage.ts), checked (debianScripts.ts) and laid
 * into one layer as dpkg would leave them after unpacking:
 *
 * - every file, symlink and new directory of each package, in the image's own layout: a path is
 *   taken through the image's symlinks, so with a merged /usr (`/bin` → `usr/bin` in the base) a
 *   package's `/bin/x` lands in `/usr/bin/x` and the `/bin` symlink stays; a directory the image
 *   already has is left as it is (dpkg does not change an existing directory either);
 * - mode and uid/gid as the package's archive has them, mtime the build epoch, entries sorted;
 * - /var/lib/dpkg/status, whole: the image's stanzas plus one per new package (`install ok
 *   installed`, with its conffiles' md5), so `dpkg -s`, `dpkg -L` and later `apt-get install`s in the
 *   image know them; /var/lib/dpkg/info/<pkg>[:arch].list (`:arch` for `Multi-Arch: same`), and the
 *   package's md5sums, conffiles, shlibs, symbols, triggers and maintainer scripts beside it, as dpkg
 *   keeps them.
 *
 * The dynamic linker: the image's ld.so.cache is not rebuilt (no `ldconfig` for another root/arch is
 * trusted here). New libraries are found anyway when they sit in glibc's system search path — the
 * multiarch directories /usr/lib/<triplet>, /lib/<triplet> and /usr/lib, /lib — which ld.so searches
 * after the cache (where Debian's shared-library packages put them). A package that ships an
 * /etc/ld.so.conf.d file, or a shared library in a directory only ld.so.conf makes searchable, needs
 * ldconfig run: it is refused (MaintainerScriptError) like a maintainer script.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join, posix } from "node:path";
import { BuildFailedError } from "@kiln/core";
import { compareUtf8 } from "@kiln/core/plugin";
import type { AptHostTools } from "./aptHost.js";
import { resolveAptPackages, type PlannedPackage } from "./aptResolve.js";
import { defaultLibraryDirs, type DebianArch } from "./debianArch.js";
import { openDeb, type DebEntry, type DebPackage } from "./debianPackage.js";
import type { DebianRootView } from "./debianRootView.js";
import { checkFileTriggers, checkMaintainerScripts, MaintainerScriptError } from "./debianScripts.js";
import { dpkgInfoName, installedStanza, parseStanzas, renderStatus, type Stanza } from "./debianStatus.js";
import type { PlannedEntry } from "./sourceLayers.js";

const SCRIPTS = new Set(["preinst", "postinst", "prerm", "postrm", "config"]);
const STATUS = "var/lib/dpkg/status";
const INFO = "var/lib/dpkg/info";

/** The image's Debian state across the apt layers of one build (per platform). */
export class DebianImageState {
  stanzas: Stanza[];

  constructor(
    readonly view: DebianRootView,
    readonly arch: DebianArch,
    readonly baseRef: string,
  ) {
    const status = view.read(STATUS);
    if (!status) {
      throw new BuildFailedError(`The base image ${baseRef} has no /var/lib/dpkg/status: withAptPackages needs a Debian-based base`, {
        hint: "Use a Debian or Ubuntu base image, or build with a builder that runs steps.",
        details: { base: baseRef },
      });
    }
    this.stanzas = parseStanzas(status.toString("utf8"));
    const dpkg = this.stanzas.find((s) => s.fields.get("Package") === "dpkg" && /installed$/.test(s.fields.get("Status") ?? ""));
    const has = dpkg?.fields.get("Architecture");
    if (has !== undefined && has !== arch.arch) {
      throw new BuildFailedError(`The base image ${baseRef} is a Debian ${has} system, the image is built for ${arch.arch}`, {
        hint: "Build for the base's platform, or use a base image of the platform you want.",
        details: { base: baseRef, baseArch: has, arch: arch.arch },
      });
    }
  }
}

export interface AptLayerOptions {
  packages: readonly string[];
  state: DebianImageState;
  tools: AptHostTools;
  env: NodeJS.ProcessEnv;
  /** An empty scratch directory for this layer. */
  dir: string;
  mtime: number;
  /** apt lists kept between builds (aptListsCache.ts). */
  listsCache?: string;
  signal?: AbortSignal;
}

export interface AptLayerResult {
  entries: PlannedEntry[];
  /** `name:arch=version` of each package added. */
  installed: string[];
}

export async function aptLayerEntries(options: AptLayerOptions): Promise<AptLayerResult> {
  const { state, dir, mtime, signal } = options;
  const resolution = await resolveAptPackages({
    packages: options.packages,
    view: state.view,
    status: renderStatus(state.stanzas),
    arch: state.arch,
    dir: join(dir, "apt"),
    tools: options.tools,
    env: options.env,
    baseRef: state.baseRef,
    ...(options.listsCache ? { listsCache: options.listsCache } : {}),
    signal,
  });
  const packages: DebPackage[] = [];
  for (const [i, deb] of resolution.debs.entries()) {
    const unpackDir = join(dir, `deb-${i}`);
    await mkdir(unpackDir, { recursive: true });
    const pkg = await openDeb(options.tools.dpkgDeb, deb, unpackDir, signal);
    checkMaintainerScripts(pkg);
    checkFileTriggers(pkg, state.view.read("var/lib/dpkg/triggers/File")?.toString("utf8"));
    checkLibraries(pkg, state);
    packages.push(pkg);
  }
  // apt's order (dependencies first), so a later package's paths see an earlier one's symlinks.
  const ordered = orderByPlan(packages, resolution.plan);
  const out = new Map<string, PlannedEntry>();
  const ownerOf = new Map<string, string>();
  const newStanzas: Stanza[] = [];
  for (const pkg of ordered) {
    const label = `${pkg.fields.get("Package")}:${pkg.fields.get("Architecture")}`;
    const hostPathOf = new Map<string, DebEntry>();
    for (const entry of pkg.entries) {
      if (entry.path === "") continue;
      if (entry.type === "file") hostPathOf.set(entry.path, entry);
      placeEntry(entry, hostPathOf, state.view, out, ownerOf, label, mtime);
    }
    const infoName = dpkgInfoName(pkg.fields);
    const listed = ["/.", ...pkg.entries.filter((e) => e.path !== "").map((e) => `/${e.path}`)];
    addData(out, `${INFO}/${infoName}.list`, Buffer.from(`${listed.join("\n")}\n`), 0o644, mtime);
    for (const [member, file] of [...pkg.controlFiles].sort((a, b) => compareUtf8(a[0], b[0]))) {
      addData(out, `${INFO}/${infoName}.${member}`, file.data, SCRIPTS.has(member) ? 0o755 : 0o644, mtime);
    }
    newStanzas.push(installedStanza(pkg.control, await conffilesOf(pkg, hostPathOf)));
  }
  const replaced = new Set(newStanzas.map((s) => `${s.fields.get("Package")}:${s.fields.get("Architecture")}`));
  state.stanzas = [...state.stanzas.filter((s) => !replaced.has(`${s.fields.get("Package")}:${s.fields.get("Architecture")}`)), ...newStanzas];
  if (ordered.length > 0) addData(out, STATUS, renderStatus(state.stanzas), 0o644, mtime);
  for (const entry of out.values()) {
    if (entry.data) state.view.set(entry.header.name, { type: "file", mode: entry.header.mode }, entry.header.name === STATUS ? entry.data : undefined);
  }
  return {
    entries: [...out.values()].sort((a, b) => compareUtf8(a.header.name, b.header.name)),
    installed: resolution.plan.map((p) => `${p.name}:${p.arch}=${p.version}`),
  };
}

/** One archive entry into the layer, at its place in the image. */
function placeEntry(
  entry: DebEntry,
  files: Map<string, DebEntry>,
  view: DebianRootView,
  out: Map<string, PlannedEntry>,
  ownerOf: Map<string, string>,
  label: string,
  mtime: number,
): void {
  const common = { mode: entry.mode, uid: entry.uid, gid: entry.gid, mtime };
  if (entry.type === "directory") {
    const at = view.resolveAll(entry.path);
    const existing = view.entries.get(at);
    if (existing?.type === "directory") return; // the image's directory (or a symlink to one) stays
    if (existing !== undefined) throw conflict(label, entry.path, "a directory", `a ${existing.type} in the image`);
    out.set(at, { header: { ...common, name: at, type: "directory" } });
    view.set(at, { type: "directory", mode: entry.mode });
    return;
  }
  const at = view.resolveParents(entry.path);
  const existing = view.entries.get(at);
  if (existing?.type === "directory") throw conflict(label, entry.path, `a ${entry.type}`, "a directory in the image");
  const other = ownerOf.get(at);
  if (other !== undefined && other !== label) throw conflict(label, entry.path, "a file", `also in ${other}`);
  ownerOf.set(at, label);
  if (entry.type === "symlink") {
    out.set(at, { header: { ...common, name: at, type: "symlink", mode: 0o777, linkname: entry.linkname! } });
    view.set(at, { type: "symlink", mode: 0o777, linkname: entry.linkname! });
    return;
  }
  const source = entry.type === "hardlink" ? files.get(entry.linkname!) : entry;
  if (!source?.hostPath) throw conflict(label, entry.path, "a hard link", `to ${entry.linkname}, which the package does not hold`);
  out.set(at, { header: { ...common, name: at, type: "file", size: source.size }, hostPath: source.hostPath });
  view.set(at, { type: "file", mode: entry.mode });
}

function addData(out: Map<string, PlannedEntry>, name: string, data: Buffer, mode: number, mtime: number): void {
  out.set(name, { header: { name, type: "file", mode, uid: 0, gid: 0, mtime, size: data.length }, data });
}

/** `[path, md5]` of each conffile the package lists (`remove-on-upgrade` entries are for upgrades only). */
async function conffilesOf(pkg: DebPackage, files: Map<string, DebEntry>): Promise<Array<[string, string]>> {
  const list = pkg.controlFiles.get("conffiles")?.data.toString("utf8") ?? "";
  const out: Array<[string, string]> = [];
  for (const raw of list.split("\n")) {
    const line = raw.trim();
    if (!line.startsWith("/")) continue;
    const entry = files.get(line.slice(1).replace(/\/+$/, ""));
    out.push([line, entry?.hostPath ? await md5(entry.hostPath) : "newconffile"]);
  }
  return out;
}

function md5(path: string): Promise<string> {
  return new Promise((done, fail) => {
    const hash = createHash("md5");
    createReadStream(path)
      .on("error", fail)
      .on("data", (d) => hash.update(d))
      .on("end", () => done(hash.digest("hex")));
  });
}

/** Libraries that only an ldconfig run would make findable (see the file comment). */
function checkLibraries(pkg: DebPackage, state: DebianImageState): void {
  const label = `${pkg.fields.get("Package")}:${pkg.fields.get("Architecture")} ${pkg.fields.get("Version")}`;
  const defaults = new Set(defaultLibraryDirs(state.arch));
  const configured = ldSoConfDirs(state.view);
  for (const entry of pkg.entries) {
    if (entry.type === "directory") continue;
    if (entry.path.startsWith("etc/ld.so.conf.d/")) {
      throw new MaintainerScriptError(
        `The Debian package ${label} adds /${entry.path}: its libraries are found only after ldconfig runs, and the oci builder runs nothing`,
        {
          hint: 'Build this image with a builder that runs steps (builder: "docker" or "buildkit").',
          details: { package: label.split(" ")[0], command: "ldconfig", file: `/${entry.path}` },
        },
      );
    }
    if (!/\.so(\.\d+)*$/.test(entry.path)) continue;
    const dir = state.view.resolveAll(posix.dirname(entry.path));
    if (!defaults.has(dir) && configured.has(dir)) {
      throw new MaintainerScriptError(
        `The Debian package ${label} installs the library /${entry.path} in /${dir}, which the dynamic linker searches only through ld.so.cache: it needs ldconfig run, and the oci builder runs nothing`,
        {
          hint: 'Build this image with a builder that runs steps (builder: "docker" or "buildkit").',
          details: { package: label.split(" ")[0], command: "ldconfig", file: `/${entry.path}` },
        },
      );
    }
  }
}

/** Directories named in the image's /etc/ld.so.conf and ld.so.conf.d/*.conf (as resolved paths). */
function ldSoConfDirs(view: DebianRootView): Set<string> {
  const texts = [
    view.read("etc/ld.so.conf")?.toString("utf8") ?? "",
    ...view
      .listKept("etc/ld.so.conf.d")
      .filter(([n]) => n.endsWith(".conf"))
      .map(([, d]) => d.toString("utf8")),
  ];
  const out = new Set<string>();
  for (const text of texts) {
    for (const raw of text.split("\n")) {
      const line = raw.replace(/#.*/, "").trim();
      if (line.startsWith("/")) out.add(view.resolveAll(line.slice(1)));
    }
  }
  return out;
}

function orderByPlan(packages: DebPackage[], plan: readonly PlannedPackage[]): DebPackage[] {
  const byKey = new Map(packages.map((p) => [`${p.fields.get("Package")}:${p.fields.get("Architecture")}`, p]));
  const out: DebPackage[] = [];
  for (const planned of plan) {
    const key = `${planned.name}:${planned.arch}`;
    const pkg = byKey.get(key) ?? byKey.get(`${planned.name}:all`);
    if (!pkg) {
      throw new BuildFailedError(`apt planned ${planned.name}:${planned.arch}=${planned.version}, but no downloaded .deb holds it`, {
        hint: "Try again; if it persists, build with a builder that runs steps.",
        details: { package: key },
      });
    }
    byKey.delete(`${pkg.fields.get("Package")}:${pkg.fields.get("Architecture")}`);
    out.push(pkg);
  }
  return out;
}

function conflict(pkg: string, path: string, what: string, existing: string): BuildFailedError {
  return new BuildFailedError(`The Debian package ${pkg} holds /${path} as ${what}, but it is ${existing}`, {
    hint: 'dpkg would refuse this too, or resolve it by running steps: build this image with a builder that runs steps (builder: "docker").',
    details: { package: pkg, path: `/${path}` },
  });
}
