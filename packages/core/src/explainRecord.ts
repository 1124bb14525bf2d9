/**
 * Explain records: the inputs of every tag Kiln built, found or promoted, kept where the next run can
 * read them, so `kiln explain --diff` and `kiln build` can say what changed since the image's last tag.
 *
 * Layout (in the project): `.kiln/explain/<image name, URI-encoded>/<tag>.json`, one file per tag,
 * keyed by the image's name (not its registry: the same image promoted or moved is the same history).
 * Each file is written whole to a temporary name and renamed (atomic: a reader never sees half a
 * record, and two processes recording different tags never touch the same file); the newest
 * EXPLAIN_RECORDS_KEPT tags per name are kept, by modification time (recording a tag again makes it
 * the newest), older ones are removed.
 *
 * Compact form (ExplainRecord): the tag's non-file inputs as `[kind, label, value]` (recipe, base,
 * platform, installer, layers — what `kiln explain` prints), and the copied files per layer as
 * `path → digest`: the first 16 hex of the file's sha256 (64 bits: plenty to tell two versions of a file
 * apart, a quarter of the size), `+x` for an executable, `d` for a directory, `l:<target>` for a link.
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { explainTag, TAG_RECIPE_VERSION, type TagExplanation } from "./hash.js";
import type { Image } from "./image.js";
import { snapshotOf } from "./snapshot.js";

export const EXPLAIN_RECORD_VERSION = 1;
/** Tags kept per image name. */
export const EXPLAIN_RECORDS_KEPT = 10;
/** Hex digits of a file's sha256 kept in a record. */
const FILE_DIGEST_HEX = 16;

export interface ExplainRecord {
  v: typeof EXPLAIN_RECORD_VERSION;
  name: string;
  /** The content tag these inputs give (the image's explicit tag may differ: see `uri`). */
  tag: string;
  uri: string;
  /** The pushed manifest (or index) digest, when known. */
  digest?: string;
  outcome: string;
  /** ISO time of the recording. */
  at: string;
  /** The tag recipe version (`kiln-tag-v3`). */
  recipe: string;
  platforms: string[];
  /** The base reference, and the digest pinBase resolved it to. */
  base: { ref?: string; digest?: string };
  /** Non-file inputs: `[kind, label, value]` as `kiln explain` lists them. */
  inputs: Array<[kind: string, label: string, value: string]>;
  /** Per layer (`layers[3]`, `context`): path → compact digest. */
  files: Record<string, Record<string, string>>;
}

/** The explanation of the tag a build works with: from its pinned source snapshot when it has one, so
 * the record describes exactly the bytes that were hashed (and no file is read twice). */
export function explainBuiltImage(image: Image): TagExplanation {
  const snapshot = snapshotOf(image);
  if (snapshot === undefined) return explainTag(image.spec);
  return explainTag(image.spec, { source: { pinned: { files: snapshot.files, digests: snapshot.digests } } });
}

/** The compact record of an explanation (see the module comment). */
export function compactRecord(image: Image, explanation: TagExplanation, result: { uri?: string | null; digest?: string; outcome: string }): ExplainRecord {
  const inputs: ExplainRecord["inputs"] = [];
  const files: ExplainRecord["files"] = {};
  for (const input of explanation.inputs) {
    if (input.kind !== "file") {
      inputs.push([input.kind, input.label, input.value]);
      continue;
    }
    const space = input.label.indexOf(" ");
    const group = space < 0 ? input.label : input.label.slice(0, space);
    const path = space < 0 ? "" : input.label.slice(space + 1);
    (files[group] ??= {})[path] = compactFileValue(input.value);
  }
  const base = image.spec.base;
  return {
    v: EXPLAIN_RECORD_VERSION,
    name: image.name,
    tag: explanation.tag,
    uri: result.uri ?? image.uri,
    ...(result.digest ? { digest: result.digest } : {}),
    outcome: result.outcome,
    at: new Date().toISOString(),
    recipe: TAG_RECIPE_VERSION,
    platforms: [...new Set(image.platform)].sort(),
    base: base.kind === "image" ? { ref: base.ref, ...(base.digest ? { digest: base.digest } : {}) } : {},
    inputs,
    files,
  };
}

/** `sha256:<hex> +x` → `<16 hex>+x`; `dir` → `d`; `symlink -> t` → `l:t`. */
function compactFileValue(value: string): string {
  if (value === "dir") return "d";
  if (value.startsWith("symlink -> ")) return `l:${value.slice("symlink -> ".length)}`;
  const match = /^sha256:([0-9a-f]{64})( \+x)?$/.exec(value);
  if (match === null) return value;
  return `${match[1]!.slice(0, FILE_DIGEST_HEX)}${match[2] ? "+x" : ""}`;
}

/** `.kiln/explain` of a project. */
export function explainDirectory(projectDir: string): string {
  return join(projectDir, ".kiln", "explain");
}

function nameDirectory(projectDir: string, name: string): string {
  return join(explainDirectory(projectDir), encodeURIComponent(name));
}

/** Writes the record (atomically) and drops the oldest tags beyond `keep`. */
export function writeExplainRecord(projectDir: string, record: ExplainRecord, keep: number = EXPLAIN_RECORDS_KEPT): string {
  const dir = nameDirectory(projectDir, record.name);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${record.tag}.json`);
  const temp = `${file}.${process.pid}.${Date.now()}.tmp`;
  try {
    writeFileSync(temp, `${JSON.stringify(record)}\n`);
    renameSync(temp, file);
  } catch (error) {
    try {
      unlinkSync(temp);
    } catch {
      // nothing was written
    }
    throw error;
  }
  for (const stale of listTagFiles(dir).slice(keep)) {
    try {
      unlinkSync(join(dir, stale.file));
    } catch {
      // removed by another process meanwhile
    }
  }
  return file;
}

/** The recorded tags of an image name, newest first. */
export function readExplainRecords(projectDir: string, name: string): ExplainRecord[] {
  const dir = nameDirectory(projectDir, name);
  const records: ExplainRecord[] = [];
  for (const { file } of listTagFiles(dir)) {
    const record = readRecordFile(join(dir, file));
    if (record !== undefined) records.push(record);
  }
  return records;
}

/** The newest record of `name` whose tag is not `exceptTag` (the previous tag of an image about to get `exceptTag`). */
export function previousExplainRecord(projectDir: string, name: string, exceptTag?: string): ExplainRecord | undefined {
  return readExplainRecords(projectDir, name).find((record) => record.tag !== exceptTag);
}

/** The newest record of `name`, whatever its tag. */
export function latestExplainRecord(projectDir: string, name: string): ExplainRecord | undefined {
  return readExplainRecords(projectDir, name)[0];
}

function listTagFiles(dir: string): Array<{ file: string; mtimeMs: number }> {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const files: Array<{ file: string; mtimeMs: number }> = [];
  for (const file of names) {
    if (!file.endsWith(".json")) continue;
    try {
      files.push({ file, mtimeMs: statSync(join(dir, file)).mtimeMs });
    } catch {
      // removed meanwhile
    }
  }
  return files.sort((a, b) => b.mtimeMs - a.mtimeMs || (a.file < b.file ? 1 : -1));
}

/** A record file, or undefined when it is not one this version reads (damaged, another version). */
function readRecordFile(file: string): ExplainRecord | undefined {
  try {
    const value = JSON.parse(readFileSync(file, "utf8")) as ExplainRecord;
    if (value?.v !== EXPLAIN_RECORD_VERSION || typeof value.tag !== "string" || !Array.isArray(value.inputs)) return undefined;
    return value;
  } catch {
    return undefined;
  }
}
