/**
 * The one listing of the files an image spec copies. Both the content tag (hash.ts) and the build
 * context (context.ts) read this list, so what is hashed is exactly what is sent.
 *
 * - Paths are POSIX, relative, sorted bytewise (UTF-8 order); they never contain `..` nor start with `/`.
 * - Names are kept byte-exact, as the docker CLI keeps them: a name that is not valid UTF-8 (a Latin-1
 *   `conf\xe9.ini`) is carried with its raw bytes as escapes in the string (rawNames.ts) — listed,
 *   matched against ignore rules, hashed and sent like any other, never dropped.
 * - Entries are files, directories and symlinks; a symlink is kept as a link (its target is recorded,
 *   never followed), so nothing outside the source tree is read through it. Sockets, FIFOs and devices
 *   are skipped. A path the user named (a source folder, a file) is followed if it is itself a link.
 * - Only the executable bit of a mode matters; stat identity (size, mtime, ctime, inode) is kept for
 *   the hash cache only.
 * - Ignore rules follow the docker CLI exactly (dockerignore.ts for matching; pruning here): an
 *   excluded directory is not descended into unless a `!` pattern starts with its path, and an
 *   excluded directory that is descended into is not itself listed.
 *
 * Which rules apply to a copied folder (sourceFolder, nodeProject):
 *   1. its own `.dockerignore` (at the folder's root), then the patterns of every earlier
 *      `dockerIgnore` layer, in declaration order (later patterns win, as in one file);
 *   2. if there are none at all, DEFAULT_IGNORE_PATTERNS (.git, __pycache__, *.pyc, .venv,
 *      node_modules at any depth).
 * A `fromDockerfile` context uses only its own `.dockerignore`, like `docker build` (no defaults, so
 * the context is what Docker would send). Single files (sourceFile, requirements, uv project files)
 * are named explicitly and never filtered.
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readFileSync, readdirSync, readlinkSync, realpathSync, statSync, type Stats } from "node:fs";
import { basename, isAbsolute, join, relative, resolve, sep } from "node:path";
import { SourceNotFoundError, ValidationError } from "./errors.js";
import { decodeName, hasRawBytes, hostPathForFs, nameBytes, quoteName } from "./rawNames.js";
import { DEFAULT_IGNORE_PATTERNS, IgnoreMatcher, parseDockerignore, type IgnorePattern, type ParentMatchInfo } from "./dockerignore.js";
import { contextDirForLayer, type ImageSpec, type LayerKind } from "./layers.js";

export type EntryType = "file" | "dir" | "symlink";

/** The layer kinds whose files listSpecFiles lists (one group per such layer). */
export const COPYING_LAYER_KINDS: ReadonlySet<LayerKind> = new Set<LayerKind>(["sourceFolder", "nodeProject", "sourceFile", "requirements", "uvProject"]);

export interface WalkEntry {
  /** POSIX path relative to the walked root (for a single-file layer: the file's name in the context). */
  path: string;
  /** POSIX path inside the build context. */
  contextPath: string;
  /** Absolute host path the entry is read from. */
  hostPath: string;
  type: EntryType;
  /** Bytes, for files; 0 otherwise. */
  size: number;
  /** Executable bit (any of u/g/o x), for files. */
  executable: boolean;
  /** For symlinks: the target exactly as stored in the link. */
  linkTarget?: string;
  /** Stat identity, used only by the hash cache (never hashed). */
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
  dev: number;
}

export type IgnoreSource = "folder .dockerignore" | "dockerIgnore layer" | "defaults" | "context .dockerignore" | "none";

export interface FileGroup {
  /** Index in `spec.layers`, or -1 for the base Dockerfile's context. */
  layerIndex: number;
  kind: LayerKind | "dockerfileContext";
  /** Folder of these entries in the build context: `kiln-layers/<i>`, or "" for the Dockerfile context root. */
  contextDir: string;
  /** Where the rules came from, and the patterns in the order they apply (for `explain`). */
  ignore: { sources: IgnoreSource[]; patterns: string[] };
  entries: WalkEntry[];
}

export interface SpecFiles {
  groups: FileGroup[];
  /** The base Dockerfile of a `fromDockerfile` spec, even when it lies outside its context. */
  dockerfile?: WalkEntry;
}

export interface WalkOptions {
  /** Relative paths always listed even if a pattern excludes them (e.g. a lockfile the recipe needs). */
  forceInclude?: readonly string[];
  /** Prefix for `contextPath` ("" for none). */
  contextDir?: string;
}

/** Lists a directory under Docker ignore rules; see the module comment for the rules. */
export function walkDirectory(root: string, patterns: readonly string[], options: WalkOptions = {}): WalkEntry[] {
  const rootAbs = resolve(root);
  const rootStat = statOrThrow(rootAbs, "source folder");
  if (!rootStat.isDirectory()) {
    throw new SourceNotFoundError(`Source folder ${JSON.stringify(rootAbs)} is not a directory`, {
      hint: "Use withSourceFile for a single file, or point at the folder that contains it.",
      details: { path: rootAbs },
    });
  }
  const matcher = patterns.length > 0 ? new IgnoreMatcher(patterns) : undefined;
  const byName = matcher === undefined ? undefined : NameRules.of(matcher);
  const force = new Set(options.forceInclude ?? []);
  const forced = (rel: string) => force.size > 0 && force.has(rel);
  const prefix = options.contextDir ? `${options.contextDir}/` : "";
  const out: WalkEntry[] = [];

  /** `parentInfo`: moby's per-pattern results for the directory (general rules). `underExcluded`: with
   * name-only rules, whether an ancestor matched them (possible only below a force-included directory,
   * whose contents are then matched from scratch, ancestors included, as moby does). */
  const visit = (dirAbs: string, dirRel: string, parentInfo: ParentMatchInfo, underExcluded: boolean): void => {
    let names: string[];
    // Whether a path below may hold raw bytes (then fs calls take its bytes); the common case checks nothing per entry.
    const rawDir = hasRawBytes(dirAbs);
    let rawNames = false;
    try {
      names = readdirSync(rawDir ? nameBytes(dirAbs) : dirAbs);
      // Node decodes a name that is not UTF-8 with U+FFFD (and lstat would then miss it): read the raw bytes.
      if (names.some((name) => name.includes("\uFFFD"))) {
        names = readdirSync(rawDir ? nameBytes(dirAbs) : dirAbs, { encoding: "buffer" }).map(decodeName);
        rawNames = true;
      }
    } catch (error) {
      throw new SourceNotFoundError(`Cannot read directory ${quoteName(dirAbs)}: ${(error as Error).message}`, {
        hint: "Check the folder's permissions, or exclude it with a .dockerignore pattern.",
        details: { path: dirAbs },
        cause: error,
      });
    }
    // Sorted per directory so the final sort below gets nearly sorted input (only a name followed by
    // a sibling that extends it with a character below "/" is out of place); that sort decides.
    names.sort();
    const absPrefix = dirAbs + sep;
    const relPrefix = dirRel === "" ? "" : `${dirRel}/`;
    for (const name of names) {
      const rel = relPrefix + name;
      const abs = absPrefix + name;
      let st: Stats;
      try {
        st = lstatSync(rawDir || (rawNames && hasRawBytes(name)) ? nameBytes(abs) : abs);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") continue; // removed since the listing: not part of the tree
        throw unreadable(abs, error);
      }
      const isDir = st.isDirectory();
      let info: ParentMatchInfo;
      let childUnderExcluded = false;
      if (byName !== undefined) {
        // Every rule is `**/<name glob>` without `!`: a path is excluded exactly when its own name (or
        // an ancestor's) matches, so neither the path string nor per-pattern state is needed.
        const excluded = underExcluded || byName.excludes(name);
        if (excluded) {
          if (!forced(rel)) continue; // nothing can be re-included below it: not walked
          childUnderExcluded = true;
        }
      } else if (matcher !== undefined && !forced(rel)) {
        const result = matcher.matchesUsingParent(rel, parentInfo, isDir);
        info = result.info;
        if (result.excluded) {
          // The docker CLI's pruning: walk into an excluded directory only if a `!` pattern names a
          // path below it; the directory itself is then not sent, only what is re-included.
          if (isDir && matcher.mayReincludeBelow(rel)) visit(abs, rel, info, false);
          continue;
        }
      }
      const entry = toEntry(rel, prefix + rel, abs, st);
      if (entry === undefined) continue;
      out.push(entry);
      if (isDir) visit(abs, rel, info, childUnderExcluded);
    }
  };
  visit(rootAbs, "", undefined, false);
  return out.sort(compareEntries);
}

/**
 * The common case of ignore rules, matched on entry names alone: every pattern is `**\/<glob>` (no
 * `!`, no `/`, `[` or `\\` in the glob — DEFAULT_IGNORE_PATTERNS is such a list). moby's matcher then
 * excludes a path iff some pattern matches the path or one of its parents, and `**\/<glob>` matches a
 * path iff the glob matches its last segment (`*` and `?` never cross a `/`). Literal names become one
 * set lookup; `*<literal>` an `endsWith`; anything else the pattern's own matcher, given the name.
 */
export class NameRules {
  private constructor(
    private readonly literal: ReadonlySet<string>,
    private readonly suffixes: readonly string[],
    private readonly globs: readonly IgnorePattern[],
  ) {}

  static of(matcher: IgnoreMatcher): NameRules | undefined {
    const literal = new Set<string>();
    const suffixes: string[] = [];
    const globs: IgnorePattern[] = [];
    for (const pattern of matcher.patterns) {
      if (pattern.exclusion || !pattern.cleaned.startsWith("**/")) return undefined;
      const glob = pattern.cleaned.slice(3);
      if (glob === "" || /[/[\\]/.test(glob) || glob.includes("**")) return undefined;
      if (!/[*?]/.test(glob)) literal.add(glob);
      else if (/^\*[^*?]+$/.test(glob)) suffixes.push(glob.slice(1));
      else globs.push(pattern);
    }
    return new NameRules(literal, suffixes, globs);
  }

  excludes(name: string): boolean {
    if (this.literal.has(name)) return true;
    for (const suffix of this.suffixes) if (name.endsWith(suffix)) return true;
    for (const glob of this.globs) if (glob.matches(name)) return true;
    return false;
  }
}

function toEntry(path: string, contextPath: string, hostPath: string, st: Stats): WalkEntry | undefined {
  let type: EntryType;
  if (st.isFile()) type = "file";
  else if (st.isDirectory()) type = "dir";
  else if (st.isSymbolicLink()) type = "symlink";
  else return undefined; // sockets, FIFOs, devices: not copyable content
  const entry: WalkEntry = {
    path,
    contextPath,
    hostPath,
    type,
    size: type === "file" ? st.size : 0,
    executable: type === "file" && (st.mode & 0o111) !== 0,
    mtimeMs: st.mtimeMs,
    ctimeMs: st.ctimeMs,
    ino: st.ino,
    dev: st.dev,
  };
  if (type === "symlink") {
    try {
      const target = readlinkSync(hostPathForFs(hostPath));
      entry.linkTarget = target.includes("\uFFFD") ? decodeName(readlinkSync(hostPathForFs(hostPath), { encoding: "buffer" })) : target;
    } catch (error) {
      throw unreadable(hostPath, error);
    }
  }
  return entry;
}

function unreadable(path: string, error: unknown): SourceNotFoundError {
  return new SourceNotFoundError(`Cannot read ${quoteName(path)}: ${(error as Error).message}`, {
    hint: "Check its permissions, or exclude it with a .dockerignore pattern.",
    details: { path },
    cause: error,
  });
}

function statOrThrow(path: string, what: string): Stats {
  try {
    return statSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new SourceNotFoundError(
      code === "ENOENT" ? `The ${what} ${JSON.stringify(path)} does not exist` : `Cannot read the ${what} ${JSON.stringify(path)}: ${(error as Error).message}`,
      {
        hint: "Relative paths resolve against the working directory at declaration time; check the path and that it is readable.",
        details: { path, field: what },
        cause: error,
      },
    );
  }
}

/** One explicitly named file (followed if it is a symlink), placed at `<contextDir>/<name>`. Its
 * `hostPath` is the file the name leads to (links resolved), which is read later without following
 * any link (listedFile.ts). */
export function fileEntry(hostPath: string, name: string, contextDir: string, what = "source file"): WalkEntry {
  const abs = resolve(hostPath);
  statOrThrow(abs, what);
  const real = resolvedOrThrow(abs, what);
  let st: Stats;
  try {
    st = lstatSync(hostPathForFs(real));
  } catch (error) {
    throw unreadable(real, error);
  }
  if (!st.isFile()) {
    throw new SourceNotFoundError(`The ${what} ${JSON.stringify(abs)} is not a regular file`, {
      hint: "Use withSourceFolder for a directory.",
      details: { path: abs, field: what },
    });
  }
  const entry = toEntry(safeName(name, what), contextDir === "" ? name : `${contextDir}/${name}`, real, st)!;
  return entry;
}

function resolvedOrThrow(path: string, what: string): string {
  try {
    // As bytes: the file a link leads to may have a name that is not UTF-8.
    return decodeName(realpathSync(path, { encoding: "buffer" }));
  } catch (error) {
    statOrThrow(path, what); // gone meanwhile: the usual message
    throw unreadable(path, error);
  }
}

function safeName(name: string, what: string): string {
  if (name === "" || name === "." || name === ".." || name.includes("/") || name.includes("\0")) {
    throw new ValidationError(`${what} name`, name, "it must be a plain file name", {
      hint: "Name the file without directories, `.` or `..`.",
    });
  }
  return name;
}

/** The ignore patterns for a copied folder at layer `index` (see the module comment). */
export function ignoreRulesForFolder(spec: Pick<ImageSpec, "layers">, index: number, folder: string): FileGroup["ignore"] {
  const sources: IgnoreSource[] = [];
  const patterns: string[] = [];
  const own = readIgnoreFile(join(folder, ".dockerignore"));
  if (own !== undefined) {
    sources.push("folder .dockerignore");
    patterns.push(...own);
  }
  for (let i = 0; i < index; i++) {
    const layer = spec.layers[i]!;
    if (layer.kind === "dockerIgnore") {
      if (!sources.includes("dockerIgnore layer")) sources.push("dockerIgnore layer");
      // Normalised the way Docker reads a file; a no-op for patterns that already are.
      patterns.push(...parseDockerignore(layer.patterns.join("\n")));
    }
  }
  if (sources.length === 0) return { sources: ["defaults"], patterns: [...DEFAULT_IGNORE_PATTERNS] };
  return { sources, patterns };
}

function readIgnoreFile(path: string): string[] | undefined {
  let fd: number;
  try {
    // Without blocking: a FIFO put in its place must not hang the listing (a link is followed, as by Docker).
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT" || (error as NodeJS.ErrnoException).code === "ENOTDIR") return undefined;
    throw error;
  }
  let bytes: Buffer;
  try {
    if (!fstatSync(fd).isFile()) {
      throw new SourceNotFoundError(`${quoteName(path)} is not a regular file`, {
        hint: "A .dockerignore must be a regular file (or a link to one); remove or replace it.",
        details: { path },
      });
    }
    bytes = readFileSync(fd);
  } finally {
    closeSync(fd);
  }
  // Bytes that are not UTF-8 stay byte-exact (a pattern may name such a file, as in Docker).
  const text = bytes.toString("utf8");
  return parseDockerignore(text.includes("\uFFFD") ? decodeName(bytes) : text);
}

/** Lists every file a spec copies, per layer, in layer order (and the Dockerfile context first). */
export function listSpecFiles(spec: ImageSpec): SpecFiles {
  const groups: FileGroup[] = [];
  const result: SpecFiles = { groups };
  if (spec.base.kind === "dockerfile") {
    const contextAbs = resolve(spec.base.contextHostPath);
    statOrThrow(contextAbs, "Dockerfile context");
    const own = readIgnoreFile(join(contextAbs, ".dockerignore"));
    const patterns = own ?? [];
    groups.push({
      layerIndex: -1,
      kind: "dockerfileContext",
      contextDir: "",
      ignore: { sources: own === undefined ? ["none"] : ["context .dockerignore"], patterns },
      entries: walkDirectory(contextAbs, patterns, { contextDir: "" }),
    });
    const dockerfileAbs = resolve(spec.base.dockerfileHostPath);
    const rel = relative(contextAbs, dockerfileAbs);
    const inside = rel !== "" && !rel.startsWith("..") && !isAbsolute(rel);
    const name = inside ? rel.split(sep).join("/") : basename(dockerfileAbs);
    const entry = fileEntry(dockerfileAbs, basename(dockerfileAbs), "", "Dockerfile");
    entry.path = name;
    entry.contextPath = name;
    result.dockerfile = entry;
  }
  spec.layers.forEach((layer, index) => {
    const contextDir = contextDirForLayer(index);
    const group = (entries: WalkEntry[], ignore: FileGroup["ignore"] = { sources: ["none"], patterns: [] }) =>
      groups.push({ layerIndex: index, kind: layer.kind, contextDir, ignore, entries });
    switch (layer.kind) {
      case "sourceFolder": {
        const ignore = ignoreRulesForFolder(spec, index, layer.hostPath);
        group(walkDirectory(layer.hostPath, ignore.patterns, { contextDir }), ignore);
        break;
      }
      case "nodeProject": {
        const ignore = ignoreRulesForFolder(spec, index, layer.hostPath);
        const needed = ["package.json", layer.lockfile];
        for (const file of needed) fileEntry(join(layer.hostPath, file), safeName(file, "node project file"), contextDir, "node project file");
        group(walkDirectory(layer.hostPath, ignore.patterns, { contextDir, forceInclude: needed }), ignore);
        break;
      }
      case "sourceFile":
        group([fileEntry(layer.hostPath, basename(layer.hostPath), contextDir)]);
        break;
      case "requirements":
        group([fileEntry(layer.hostPath, layer.name, contextDir, "requirements file")]);
        break;
      case "uvProject":
        group([
          fileEntry(layer.pyprojectHostPath, "pyproject.toml", contextDir, "pyproject.toml"),
          fileEntry(layer.lockHostPath, "uv.lock", contextDir, "uv.lock"),
        ]);
        break;
      default:
        break;
    }
  });
  return result;
}

/** Bytewise (UTF-8) order of two JS strings, without encoding them: UTF-16 order differs only where
 * surrogates meet U+E000..U+FFFF. A name holding raw bytes (rawNames.ts) is compared by its bytes. */
export function compareUtf8(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x !== y) {
      // An escaped raw byte on either side (a lone U+DC80..U+DCFF): the bytes decide (rare).
      const afterHigh = i > 0 && a.charCodeAt(i - 1) >= 0xd800 && a.charCodeAt(i - 1) <= 0xdbff;
      if (!afterHigh && ((x >= 0xdc80 && x <= 0xdcff) || (y >= 0xdc80 && y <= 0xdcff))) return Buffer.compare(nameBytes(a), nameBytes(b));
      if (x >= 0xd800 && y >= 0xd800) {
        x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
        y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
      }
      return x - y;
    }
  }
  return a.length - b.length;
}

function compareEntries(a: WalkEntry, b: WalkEntry): number {
  return compareUtf8(a.path, b.path);
}
