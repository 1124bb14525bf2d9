/**
 * The automatic content tag: sha256 over a canonical, framed encoding of everything that decides
 * what an image contains, truncated to 128 bits (32 lowercase hex).
 *
 * Encoding: a recipe salt, then one record per input: frame(kind) frame(label) u32(fieldCount) and per
 * field frame(name) + a typed value (0x01 string frame | 0x02 u32 count + frames | 0x03 u32 count +
 * key/value frame pairs); frame = u32 big-endian byte length + UTF-8 bytes. So `["ab","c"]` and
 * `["a","bc"]`, or `apt vim` and `commands vim`, can never encode alike.
 *
 * Hashed: base (image ref + python/node version, or the Dockerfile's bytes + its whole context +
 * build args + target), every layer in order with a type tag, the files copied (walk.ts: sorted POSIX
 * paths, type, executable bit, content digest or link target), the platforms (as a set), the
 * installer and uv image, build secret ids and targets. Not hashed: secret values, registry, name,
 * explicit tag, extendability, host paths, mtimes, owners, other mode bits, ignore patterns
 * themselves (only their effect: which files are copied), and credentials in index URLs.
 */
import { closeSync, openSync, readSync } from "node:fs";
import { createHash, type Hash } from "node:crypto";
import { SourceNotFoundError } from "./errors.js";
import type { ImageSpec, Layer } from "./layers.js";
import { listSpecFiles, type FileGroup, type WalkEntry } from "./walk.js";
import { FileDigestCache, sharedDigestCache } from "./statcache.js";

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

export interface ExplainOptions extends HashOptions {
  /** List every copied file's digest (default true), not just each layer's tree digest. */
  files?: boolean;
}

/** The automatic tag of an image: 32 lowercase hex characters. Synchronous. */
export function computeTag(image: ImageLike, options: HashOptions = {}): string {
  return encodeSpec(specOf(image), options, undefined).tag;
}

/** The tag together with every input that went into it, so a user can see why a tag changed. */
export function explainTag(image: ImageLike, options: ExplainOptions = {}): TagExplanation {
  const inputs: TagInput[] = [];
  const result = encodeSpec(specOf(image), options, { inputs, files: options.files !== false });
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

type FieldValue = string | readonly string[] | { pairs: ReadonlyArray<readonly [string, string]> };

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
    const n = s.length;
    this.reserve(4 + n * 3); // at most 3 UTF-8 bytes per UTF-16 unit
    const buffer = this.buffer;
    const start = this.position + 4;
    // Short ASCII (paths, hex digests): copying char codes beats a call into the UTF-8 encoder.
    if (n <= 128) {
      let i = 0;
      while (i < n) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        buffer[start + i++] = c;
      }
      if (i === n) {
        buffer.writeUInt32BE(n, this.position);
        this.position = start + n;
        return;
      }
    }
    const length = buffer.write(s, start, "utf8");
    buffer.writeUInt32BE(length, this.position);
    this.position = start + length;
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
    typeof value === "string" ? JSON.stringify(value) : Array.isArray(value) ? JSON.stringify(value) : JSON.stringify(Object.fromEntries((value as { pairs: Array<[string, string]> }).pairs));
  if (fields.length === 1 && fields[0]![0] === "value") return show(fields[0]![1]);
  return fields.map(([name, value]) => `${name}=${show(value)}`).join(" ");
}

// ---------------------------------------------------------------------------------------------
// The spec

function encodeSpec(spec: ImageSpec, options: HashOptions, recorder: Recorder | undefined): { tag: string; digest: string } {
  const cache = options.cache === false ? undefined : (options.cache ?? sharedDigestCache());
  const encoder = new TagEncoder(recorder);
  encoder.input("recipe", "recipe", [["value", TAG_RECIPE_VERSION]]);
  const files = listSpecFiles(spec);
  const groupsByLayer = new Map<number, FileGroup>(files.groups.map((group) => [group.layerIndex, group]));
  const fileDigest = (entry: WalkEntry) => digestEntry(entry, cache);
  const treeOf = (group: FileGroup) => treeDigest(group, fileDigest, encoder, cache);

  const base = spec.base;
  if (base.kind === "image") {
    encoder.input("base", "base", [
      ["image", base.ref],
      ["python", base.python ? base.python.join(".") : ""],
      ["node", base.node !== undefined ? String(base.node) : ""],
    ]);
  } else {
    const context = groupsByLayer.get(-1)!;
    const tree = treeDigest(context, fileDigest, encoder, cache);
    encoder.input("base", "base", [
      ["dockerfile", `sha256:${fileDigest(files.dockerfile!)}`],
      ["dockerfilePath", files.dockerfile!.path],
      ["context", tree.digest],
      ["contextEntries", String(tree.count)],
      ["buildArgs", { pairs: [...base.buildArgs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)) }],
      ["target", base.target ?? ""],
      // Ids only (never values); absent for a Dockerfile without secrets, which hashes as before.
      ...(base.secrets && base.secrets.length > 0 ? [["secrets", base.secrets] as [string, string[]]] : []),
    ]);
  }
  encoder.input("platform", "platform", [["value", [...new Set(spec.platform)].sort()]]);
  encoder.input("installer", "installer", [
    ["installer", spec.installer],
    ["uvImage", spec.uvImage],
  ]);

  spec.layers.forEach((layer, index) => {
    const label = `layers[${index}] ${layer.kind}`;
    const fields = layerFields(layer, groupsByLayer.get(index), fileDigest, treeOf, encoder);
    if (fields !== undefined) encoder.input("layer", label, fields);
  });

  const result = encoder.finish();
  cache?.save();
  return result;
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
    if (encoder.explaining) encoder.detail("file", `${labelOf(group!)} ${entry.path}`, describeEntry(entry, fileDigest));
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
        : [["commands", layer.commands], ["secrets", layer.secrets.map((s) => (s.target === undefined ? s.id : `${s.id}=${s.target}`))]];
    case "env":
      return [["vars", { pairs: layer.vars }]];
    case "workdir":
      return [["path", layer.path]];
    case "sourceFolder": {
      const tree = treeOf(group!);
      return [["dest", layer.dest], ["files", tree.digest], ["entries", String(tree.count)]];
    }
    case "sourceFile":
      return [["dest", layer.dest], ["name", group!.entries[0]!.path], ["content", single(0)]];
    case "dockerIgnore":
      // Only its effect counts: the files it removes from later layers' trees.
      return undefined;
    case "uvProject":
      return [["pyproject", single(0)], ["uvLock", single(1)], ["extraArgs", layer.extraArgs ?? []]];
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
  if (entry.type === "symlink") return `symlink -> ${entry.linkTarget}`;
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
): { digest: string; count: number } {
  const hash = createHash("sha256");
  const frames = new Frames(hash);
  frames.uint(group.entries.length);
  for (const entry of group.entries) {
    frames.str(entry.path);
    if (entry.type === "file") {
      frames.byte(entry.executable ? 0x46 : 0x66); // "F" / "f"
      const row = cache === undefined ? -1 : cache.lookup(entry.hostPath, entry);
      if (row !== -1) frames.cachedDigest(cache!, row);
      else frames.str(fileDigest(entry));
    } else if (entry.type === "symlink") {
      frames.byte(0x6c); // "l"
      frames.str(entry.linkTarget ?? "");
    } else {
      frames.byte(0x64); // "d"
    }
    if (encoder.explaining) encoder.detail("file", `${labelOf(group)} ${entry.path}`, describeEntry(entry, fileDigest));
  }
  frames.flush();
  return { digest: `sha256:${hash.digest("hex")}`, count: group.entries.length };
}

// ---------------------------------------------------------------------------------------------
// File contents

let readBuffer: Buffer | undefined;
const READ_BUFFER_SIZE = 1 << 20;

/** sha256 hex of a listed file's contents: from the stat cache when its identity is unchanged. */
export function digestEntry(entry: WalkEntry, cache: FileDigestCache | undefined): string {
  const known = cache?.get(entry.hostPath, entry);
  if (known !== undefined) return known;
  let result: { digest: string; size: number };
  try {
    result = digestFileSync(entry.hostPath);
  } catch (error) {
    throw new SourceNotFoundError(`Cannot read ${JSON.stringify(entry.hostPath)}: ${(error as Error).message}`, {
      hint: "A copied file disappeared or is unreadable; fix its permissions or exclude it with .dockerignore, and retry once the sources are stable.",
      details: { path: entry.hostPath },
      cause: error,
    });
  }
  const { digest, size } = result;
  // A file that changed while we read it is hashed as read, but not remembered.
  if (size === entry.size) cache?.set(entry.hostPath, entry, digest);
  return digest;
}

/** Synchronous, one reused 1 MiB buffer: no promise or allocation per file on the hot path. */
export function digestFileSync(path: string): { digest: string; size: number } {
  readBuffer ??= Buffer.allocUnsafe(READ_BUFFER_SIZE);
  const buffer = readBuffer;
  const hash = createHash("sha256");
  const fd = openSync(path, "r");
  let size = 0;
  try {
    for (;;) {
      const n = readSync(fd, buffer, 0, buffer.length, null);
      if (n === 0) break;
      hash.update(n === buffer.length ? buffer : buffer.subarray(0, n));
      size += n;
    }
  } finally {
    closeSync(fd);
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
