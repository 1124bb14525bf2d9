/**
 * The automatic content tag: sha256 over a canonical, framed encoding of everything that decides
 * what an image contains, truncated to 128 bits (32 lowercase hex).
 *
 * Encoding: a recipe salt, then one record per input: frame(kind) frame(label) u32(fieldCount) and per
 * field frame(name) + a typed value (0x01 string frame | 0x02 u32 count + frames | 0x03 u32 count +
 * key/value frame pairs); frame = u32 big-endian byte length + UTF-8 bytes. So `["ab","c"]` and
 * `["a","bc"]`, or `apt vim` and `commands vim`, can never encode alike.
 *
 * Hashed: base (image ref + python/node version + the digest pinBase resolved it to, or the Dockerfile's bytes + its whole context +
 * build args + target), every layer in order with a type tag, the files copied (walk.ts: sorted POSIX
 * paths, type, executable bit, content digest or link target), the platforms (as a set), the
 * installer and uv image, build secret ids and targets. Not hashed: secret values, registry, name,
 * explicit tag, extendability, host paths, mtimes, owners, other mode bits, ignore patterns
 * themselves (only their effect: which files are copied), and credentials in index URLs.
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { createHash, type Hash } from "node:crypto";
import { KilnError } from "./errors.js";
import type { ImageSpec, Layer } from "./layers.js";
import { assertListed, openFailure, openPath, OPEN_LISTED_FLAGS, sizeChanged } from "./listedFile.js";
import { displayName, hasRawBytes, nameBytes } from "./rawNames.js";
import { snapshotTestHooks } from "./snapshotHooks.js";
import { listSpecFiles, type FileGroup, type SpecFiles, type WalkEntry } from "./walk.js";
import { type FileDigestCache, sharedDigestCache } from "./statcache.js";

/** Bump when the Dockerfile recipe changes in a way that changes images built from the same spec. */
export const TAG_RECIPE_VERSION = "kiln-tag-v3";

/** An `Image` (anything with a `spec`) or its plain spec. */
export type ImageLike = ImageSpec | Readonly<ImageSpec> | { readonly spec: Readonly<ImageSpec> };

export function specOf(image: ImageLike): ImageSpec {
  return ("spec" in image && typeof image.spec === "object" && image.spec !== null ? image.spec : image) as ImageSpec;
}

export interface TagInput {
  /** `recipe`, `base`, `platform`, `installer`, `layer`, `files`, or `file` (a detail of a `files` input). */
  kind: string;
  /** Stable name of the input, e.g. `layers[2] pipPackages` or `layers[4] src/app.py`. */
  label: string;
  /** What was hashed, readable: values, or content digests for files. */
  value: string;
}

export interface TagExplanation {
  tag: string;
  /** The full sha256 the tag is cut from. */
  digest: string;
  inputs: TagInput[];
}

export interface HashOptions {
  /** The digest cache to use; `false` hashes every file again. Default: the shared persisted cache. */
  cache?: FileDigestCache | false;
}

/** Where the files of a tag come from (snapshot.ts): pinned ones (a listing and the sha256 of each
 * file as hashed then), or a fresh listing whose digests are recorded as they are hashed. */
export type FileSource = { pinned: PinnedFiles } | { record: Map<WalkEntry, Buffer> };

export interface PinnedFiles {
  files: SpecFiles;
  /** sha256 (32 bytes) of every listed regular file, and of the Dockerfile. */
  digests: ReadonlyMap<WalkEntry, Buffer>;
}

export interface ExplainOptions extends HashOptions {
  /** List every copied file's digest (default true), not just each layer's tree digest. */
  files?: boolean;
  /** Explain from these files (a build's pinned snapshot) instead of listing and hashing the tree. */
  source?: FileSource;
}

/** The automatic tag of an image: 32 lowercase hex characters. Synchronous. */
export function computeTag(image: ImageLike, options: HashOptions = {}): string {
  return encodeSpec(specOf(image), options, undefined).tag;
}

/** The tag together with every input that went into it, so a user can see why a tag changed. */
export function explainTag(image: ImageLike, options: ExplainOptions = {}): TagExplanation {
  const inputs: TagInput[] = [];
  const result = encodeSpec(specOf(image), options, { inputs, files: options.files !== false }, options.source);
  return { tag: result.tag, digest: result.digest, inputs };
}

export interface TagInputChange {
  label: string;
  kind: string;
  /** Absent when the input was added. */
  before?: string;
  /** Absent when the input was removed. */
  after?: string;
}

/** The inputs that differ between two explanations (added, removed, or changed), in `after`'s order. */
export function diffTagExplanations(before: TagExplanation, after: TagExplanation): TagInputChange[] {
  const old = new Map(before.inputs.map((input) => [input.label, input]));
  const seen = new Set<string>();
  const changes: TagInputChange[] = [];
  for (const input of after.inputs) {
    seen.add(input.label);
    const previous = old.get(input.label);
    if (previous === undefined) changes.push({ label: input.label, kind: input.kind, after: input.value });
    else if (previous.value !== input.value) changes.push({ label: input.label, kind: input.kind, before: previous.value, after: input.value });
  }
  for (const input of before.inputs) {
    if (!seen.has(input.label)) changes.push({ label: input.label, kind: input.kind, before: input.value });
  }
  return changes;
}

// ---------------------------------------------------------------------------------------------
// Framed encoding

/** `hideValues`: hashed as usual, but explained (records, artifacts, `kiln explain`) as key → sha256 of the value. */
type FieldValue = string | readonly string[] | { pairs: ReadonlyArray<readonly [string, string]>; hideValues?: true };

/** Length-prefixed fields, batched in a buffer so a 20,000-file tree costs a few hash updates, not
 * a hundred thousand. */
class Frames {
  private buffer = Buffer.allocUnsafe(1 << 16);
  private position = 0;

  constructor(private readonly hash: Hash) {}

  private reserve(bytes: number): void {
    if (this.position + bytes <= this.buffer.length) return;
    this.flush();
    if (bytes > this.buffer.length) this.buffer = Buffer.allocUnsafe(bytes);
  }
  flush(): void {
    if (this.position > 0) this.hash.update(this.buffer.subarray(0, this.position));
    this.position = 0;
  }
  uint(n: number): void {
    this.reserve(4);
    this.buffer.writeUInt32BE(n, this.position);
    this.position += 4;
  }
  byte(n: number): void {
    this.reserve(1);
    this.buffer[this.position++] = n;
  }
  str(s: string): void {
    if (!this.ascii(s)) this.utf8(s);
  }
  /** A listed path or link target: the same bytes as `str` for valid UTF-8; a name that is not
   * (rawNames.ts) is framed as its raw bytes, so `conf\xe9.ini` and `confé.ini` differ. */
  path(s: string): void {
    if (this.ascii(s)) return;
    if (hasRawBytes(s)) this.bytes(nameBytes(s));
    else this.utf8(s);
  }
  /** Short ASCII (paths, hex digests): copying char codes beats a call into the UTF-8 encoder.
   * False (nothing written) for anything else. */
  private ascii(s: string): boolean {
    const n = s.length;
    if (n > 128) return false;
    this.reserve(4 + n);
    const buffer = this.buffer;
    const start = this.position + 4;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) return false;
      buffer[start + i] = c;
    }
    buffer.writeUInt32BE(n, this.position);
    this.position = start + n;
    return true;
  }
  private utf8(s: string): void {
    this.reserve(4 + s.length * 3); // at most 3 UTF-8 bytes per UTF-16 unit
    const length = this.buffer.write(s, this.position + 4, "utf8");
    this.buffer.writeUInt32BE(length, this.position);
    this.position += 4 + length;
  }
  private bytes(b: Buffer): void {
    this.reserve(4 + b.length);
    this.buffer.writeUInt32BE(b.length, this.position);
    b.copy(this.buffer, this.position + 4);
    this.position += 4 + b.length;
  }
  /** The same bytes as `str(<hex digest>)`, written straight from the stat cache's table. */
  cachedDigest(cache: FileDigestCache, row: number): void {
    this.reserve(4 + 64);
    this.buffer.writeUInt32BE(64, this.position);
    cache.writeHex(row, this.buffer, this.position + 4);
    this.position += 4 + 64;
  }
}

interface Recorder {
  inputs: TagInput[];
  files: boolean;
}

class TagEncoder {
  private readonly hash = createHash("sha256");
  private readonly frames = new Frames(this.hash);

  constructor(private readonly recorder: Recorder | undefined) {
    this.frames.str(TAG_RECIPE_VERSION);
  }

  input(kind: string, label: string, fields: Array<[name: string, value: FieldValue]>): void {
    const f = this.frames;
    f.str(kind);
    f.str(label);
    f.uint(fields.length);
    for (const [name, value] of fields) {
      f.str(name);
      if (typeof value === "string") {
        f.byte(1);
        f.str(value);
      } else if (Array.isArray(value)) {
        f.byte(2);
        f.uint(value.length);
        for (const item of value as readonly string[]) f.str(item);
      } else {
        const pairs = (value as { pairs: ReadonlyArray<readonly [string, string]> }).pairs;
        f.byte(3);
        f.uint(pairs.length);
        for (const [k, v] of pairs) {
          f.str(k);
          f.str(v);
        }
      }
    }
    this.recorder?.inputs.push({ kind, label, value: displayFields(fields) });
  }

  /** A detail line in the explanation only (already covered by a hashed tree digest). */
  detail(kind: string, label: string, value: string): void {
    if (this.recorder?.files) this.recorder.inputs.push({ kind, label, value });
  }

  get explaining(): boolean {
    return this.recorder?.files === true;
  }

  finish(): { tag: string; digest: string } {
    this.frames.flush();
    const digest = this.hash.digest("hex");
    return { digest, tag: digest.slice(0, 32) };
  }
}

function displayFields(fields: Array<[string, FieldValue]>): string {
  const show = (value: FieldValue): string =>
    typeof value === "string"
      ? JSON.stringify(value)
      : Array.isArray(value)
        ? JSON.stringify(value)
        : JSON.stringify(Object.fromEntries(shownPairs(value as { pairs: Array<[string, string]>; hideValues?: true })));
  if (fields.length === 1 && fields[0]![0] === "value") return show(fields[0]![1]);
  return fields.map(([name, value]) => `${name}=${show(value)}`).join(" ");
}

function shownPairs(value: { pairs: Array<[string, string]>; hideValues?: true }): Array<[string, string]> {
  if (!value.hideValues) return value.pairs;
  return value.pairs.map(([key, v]) => [key, `sha256:${createHash("sha256").update(v, "utf8").digest("hex")}`]);
}

// ---------------------------------------------------------------------------------------------
// The spec

/** The tag of `spec` from a FileSource (snapshot.ts), with the cache it used. */
export function hashSpec(
  spec: ImageSpec,
  options: HashOptions,
  source: FileSource,
): { tag: string; digest: string; files: SpecFiles; cache: FileDigestCache | undefined } {
  return encodeSpec(spec, options, undefined, source);
}

function encodeSpec(
  spec: ImageSpec,
  options: HashOptions,
  recorder: Recorder | undefined,
  source?: FileSource,
): { tag: string; digest: string; files: SpecFiles; cache: FileDigestCache | undefined } {
  const pinned = source !== undefined && "pinned" in source ? source.pinned : undefined;
  const record = source !== undefined && "record" in source ? source.record : undefined;
  const cache = pinned !== undefined || options.cache === false ? undefined : (options.cache ?? sharedDigestCache());
  const encoder = new TagEncoder(recorder);
  encoder.input("recipe", "recipe", [["value", TAG_RECIPE_VERSION]]);
  let files: SpecFiles;
  if (pinned !== undefined) files = pinned.files;
  else {
    files = listSpecFiles(spec);
    snapshotTestHooks()?.afterListing?.(files);
  }
  const groupsByLayer = new Map<number, FileGroup>(files.groups.map((group) => [group.layerIndex, group]));
  const fileDigest = pinned !== undefined ? (entry: WalkEntry) => pinnedHex(pinned, entry) : recordingDigest(cache, record);
  const treeOf = (group: FileGroup) => treeDigest(group, fileDigest, encoder, cache, record);

  const base = spec.base;
  if (base.kind === "image" && base.image !== undefined) {
    // A Kiln image as the base (graph.ts): its content tag, not its reference (registry and name are
    // never hashed), so a base that changes rebuilds this image and one moved elsewhere does not.
    encoder.input("base", "base", [
      ["kilnImage", baseContentTag(base.image, options)],
      ["explicitTag", base.image.tag ?? ""],
      ["python", base.python ? base.python.join(".") : ""],
      ["node", base.node !== undefined ? String(base.node) : ""],
    ]);
    if (encoder.explaining) encoder.detail("base", "base reference", base.ref);
  } else if (base.kind === "image") {
    encoder.input("base", "base", [
      ["image", base.ref],
      ["python", base.python ? base.python.join(".") : ""],
      ["node", base.node !== undefined ? String(base.node) : ""],
      // pinBase (pinBase.ts): the digest the reference named when the tag was computed. Absent for an
      // unpinned base, whose tag is exactly what it was before pinning existed.
      ...(base.digest !== undefined ? [["digest", base.digest] as [string, string]] : []),
    ]);
  } else {
    const context = groupsByLayer.get(-1)!;
    const tree = treeOf(context);
    encoder.input("base", "base", [
      ["dockerfile", `sha256:${fileDigest(files.dockerfile!)}`],
      ["dockerfilePath", files.dockerfile!.path],
      ["context", tree.digest],
      ["contextEntries", String(tree.count)],
      // Values hashed, never shown: a build arg may carry something not meant for records on disk or in a registry.
      ["buildArgs", { pairs: [...base.buildArgs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)), hideValues: true }],
      ["target", base.target ?? ""],
      // Ids only (never values); absent for a Dockerfile without secrets, which hashes as before.
      ...(base.secrets && base.secrets.length > 0 ? [["secrets", base.secrets] as [string, string[]]] : []),
    ]);
  }
  encoder.input("platform", "platform", [["value", [...new Set(spec.platform)].sort()]]);
  encoder.input("installer", "installer", [
    ["installer", spec.installer],
    ["uvImage", spec.uvImage],
    // pinBase: the digest the uv image named when the tag was computed; absent (tag as before) when unpinned.
    ...(spec.uvDigest !== undefined ? [["uvDigest", spec.uvDigest] as [string, string]] : []),
  ]);

  spec.layers.forEach((layer, index) => {
    const label = `layers[${index}] ${layer.kind}`;
    const fields = layerFields(layer, groupsByLayer.get(index), fileDigest, treeOf, encoder);
    if (fields !== undefined) encoder.input("layer", label, fields);
  });

  const result = encoder.finish();
  cache?.save();
  return { ...result, files, cache };
}

/** The content tag of a nested base image (its explicit tag, if any, is hashed beside it). */
function baseContentTag(spec: ImageSpec, options: HashOptions): string {
  return encodeSpec({ ...spec, tag: undefined } as ImageSpec, options, undefined).tag;
}

/** A file's digest as pinned (hex). */
function pinnedHex(pinned: PinnedFiles, entry: WalkEntry): string {
  const digest = pinned.digests.get(entry);
  if (digest === undefined)
    throw new KilnError(`No pinned digest for ${JSON.stringify(entry.hostPath)}`, {
      hint: "This is a bug in Kiln: a snapshot was used with files it did not list.",
    });
  return digest.toString("hex");
}

/** `digestEntry`, remembering each file's first digest in `record` (a file hashed twice, e.g. for
 * an explanation, keeps the digest that went into the tag). */
function recordingDigest(cache: FileDigestCache | undefined, record: Map<WalkEntry, Buffer> | undefined): (entry: WalkEntry) => string {
  if (record === undefined) return (entry) => digestEntry(entry, cache);
  return (entry) => {
    const known = record.get(entry);
    if (known !== undefined) return known.toString("hex");
    const digest = digestEntry(entry, cache);
    record.set(entry, Buffer.from(digest, "hex"));
    return digest;
  };
}

function layerFields(
  layer: Layer,
  group: FileGroup | undefined,
  fileDigest: (entry: WalkEntry) => string,
  treeOf: (group: FileGroup) => { digest: string; count: number },
  encoder: TagEncoder,
): Array<[string, FieldValue]> | undefined {
  const pip = (l: { indexUrl?: string; extraIndexUrls?: string[]; pre?: boolean; extraArgs?: string[] }): Array<[string, FieldValue]> => [
    ["indexUrl", l.indexUrl !== undefined ? withoutCredentials(l.indexUrl) : ""],
    ["extraIndexUrls", (l.extraIndexUrls ?? []).map(withoutCredentials)],
    ["pre", l.pre ? "true" : "false"],
    ["extraArgs", l.extraArgs ?? []],
  ];
  const single = (i: number) => {
    const entry = group!.entries[i]!;
    if (encoder.explaining) encoder.detail("file", `${labelOf(group!)} ${displayName(entry.path)}`, describeEntry(entry, fileDigest));
    return `sha256:${fileDigest(entry)}${entry.executable ? " +x" : ""}`;
  };
  switch (layer.kind) {
    case "aptPackages":
      return [["packages", layer.packages]];
    case "pipPackages":
      return [["packages", layer.packages], ...pip(layer)];
    case "requirements":
      return [["name", layer.name], ["content", single(0)], ...pip(layer)];
    case "commands":
      // Secret ids and targets (never values: the spec has none). Without secrets the fields are exactly
      // those of a plain commands layer. `id=target` is unambiguous: neither may contain `=`.
      return layer.secrets === undefined || layer.secrets.length === 0
        ? [["commands", layer.commands]]
        : [
            ["commands", layer.commands],
            ["secrets", layer.secrets.map((s) => (s.target === undefined ? s.id : `${s.id}=${s.target}`))],
          ];
    case "env":
      return [["vars", { pairs: layer.vars }]];
    case "workdir":
      return [["path", layer.path]];
    case "sourceFolder": {
      const tree = treeOf(group!);
      return [
        ["dest", layer.dest],
        ["files", tree.digest],
        ["entries", String(tree.count)],
      ];
    }
    case "sourceFile":
      return [
        ["dest", layer.dest],
        ["name", group!.entries[0]!.path],
        ["content", single(0)],
      ];
    case "dockerIgnore":
      // Only its effect counts: the files it removes from later layers' trees.
      return undefined;
    case "uvProject":
      return [
        ["pyproject", single(0)],
        ["uvLock", single(1)],
        ["extraArgs", layer.extraArgs ?? []],
      ];
    case "nodeProject": {
      const tree = treeOf(group!);
      return [
        ["dest", layer.dest],
        ["manager", layer.manager],
        ["lockfile", layer.lockfile],
        ["files", tree.digest],
        ["entries", String(tree.count)],
      ];
    }
    case "labels":
      return [["labels", { pairs: layer.labels }]];
    case "user":
      return [["user", layer.user]];
    default: {
      // A layer kind this version does not know: hash its data, minus host paths.
      const data = Object.entries(layer as Record<string, unknown>)
        .filter(([key]) => !/hostpath$/i.test(key))
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([key, value]) => [key, JSON.stringify(value) ?? ""] as [string, string]);
      return [["data", { pairs: data }]];
    }
  }
}

function labelOf(group: FileGroup): string {
  return group.layerIndex === -1 ? "context" : `layers[${group.layerIndex}]`;
}

function describeEntry(entry: WalkEntry, fileDigest: (entry: WalkEntry) => string): string {
  if (entry.type === "dir") return "dir";
  if (entry.type === "symlink") return `symlink -> ${displayName(entry.linkTarget ?? "")}`;
  return `sha256:${fileDigest(entry)}${entry.executable ? " +x" : ""}`;
}

/** sha256 over the framed (path, type, exec bit, content digest | link target) of every entry. One
 * pass: a file whose stat identity the cache knows has its digest copied from the cache's table into
 * the frame buffer (no hex string per file); any other file is read and hashed. */
function treeDigest(
  group: FileGroup,
  fileDigest: (entry: WalkEntry) => string,
  encoder: TagEncoder,
  cache: FileDigestCache | undefined,
  record: Map<WalkEntry, Buffer> | undefined,
): { digest: string; count: number } {
  const hash = createHash("sha256");
  const frames = new Frames(hash);
  frames.uint(group.entries.length);
  for (const entry of group.entries) {
    frames.path(entry.path);
    if (entry.type === "file") {
      frames.byte(entry.executable ? 0x46 : 0x66); // "F" / "f"
      const row = cache === undefined ? -1 : cache.lookup(entry.hostPath, entry);
      if (row !== -1) {
        frames.cachedDigest(cache!, row);
        if (record !== undefined && !record.has(entry)) record.set(entry, cache!.digestBytes(row));
      } else frames.str(fileDigest(entry));
    } else if (entry.type === "symlink") {
      frames.byte(0x6c); // "l"
      frames.path(entry.linkTarget ?? "");
    } else {
      frames.byte(0x64); // "d"
    }
    if (encoder.explaining) encoder.detail("file", `${labelOf(group)} ${displayName(entry.path)}`, describeEntry(entry, fileDigest));
  }
  frames.flush();
  return { digest: `sha256:${hash.digest("hex")}`, count: group.entries.length };
}

// ---------------------------------------------------------------------------------------------
// File contents

let readBuffer: Buffer | undefined;
const READ_BUFFER_SIZE = 1 << 20;

/** sha256 hex of a listed file's contents: from the stat cache when its identity is unchanged, else
 * read (listedFile.ts: no link followed, never blocking, the file checked against the listing). */
export function digestEntry(entry: WalkEntry, cache: FileDigestCache | undefined): string {
  const known = cache?.get(entry.hostPath, entry);
  if (known !== undefined) return known;
  const { digest, unchanged } = digestListedFileSync(entry);
  // Remembered under the listing's identity only if the file still had it when read.
  if (unchanged) cache?.set(entry.hostPath, entry, digest);
  return digest;
}

/** Hashes a listed file, or throws SourceChangedError when it is not the file listed (replaced, a
 * link or FIFO put in its place, another size, or changed size while read). */
function digestListedFileSync(entry: WalkEntry): { digest: string; unchanged: boolean } {
  const when = "while hashing it for the content tag";
  let fd: number;
  try {
    fd = openSync(openPath(entry), OPEN_LISTED_FLAGS);
  } catch (error) {
    throw openFailure(entry, error, when);
  }
  try {
    const st = fstatSync(fd);
    assertListed(entry, st, when);
    const { digest, size } = hashDescriptor(fd);
    if (size !== entry.size) throw sizeChanged(entry, size, when);
    return { digest, unchanged: st.mtimeMs === entry.mtimeMs && st.ctimeMs === entry.ctimeMs };
  } finally {
    closeSync(fd);
  }
}

/** sha256 of a regular file. Opened like a listed file: a link is not followed (ELOOP), and a FIFO,
 * socket or device is refused without blocking. Synchronous, one reused 1 MiB buffer: no promise or
 * allocation per file on the hot path. */
export function digestFileSync(path: string | Buffer): { digest: string; size: number } {
  const fd = openSync(path, OPEN_LISTED_FLAGS);
  try {
    if (!fstatSync(fd).isFile()) throw Object.assign(new Error(`${JSON.stringify(String(path))} is not a regular file`), { code: "EINVAL" });
    return hashDescriptor(fd);
  } finally {
    closeSync(fd);
  }
}

function hashDescriptor(fd: number): { digest: string; size: number } {
  readBuffer ??= Buffer.allocUnsafe(READ_BUFFER_SIZE);
  const buffer = readBuffer;
  const hash = createHash("sha256");
  let size = 0;
  for (;;) {
    const n = readSync(fd, buffer, 0, buffer.length, null);
    if (n === 0) break;
    hash.update(n === buffer.length ? buffer : buffer.subarray(0, n));
    size += n;
  }
  return { digest: hash.digest("hex"), size };
}

/** An index URL with any `user:password@` removed: credentials never enter the tag. */
function withoutCredentials(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.username === "" && parsed.password === "") return url;
    parsed.username = "";
    parsed.password = "";
    return parsed.toString();
  } catch {
    return url.replace(/\/\/[^/@\s]*@/, "//");
  }
}
