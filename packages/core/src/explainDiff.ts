/**
 * What changed between two explain records (explainRecord.ts) of the same image name: the answer to
 * "why did this rebuild?". Files added, removed or changed (per layer), layers added, removed or
 * changed (a layer whose only difference is the digest of files it copies is told by its files),
 * platforms, base (and its pinned digest), installer, and Kiln's tag recipe version.
 */
import type { ExplainRecord } from "./explainRecord.js";

export interface InputChange {
  label: string;
  /** Absent when added. */
  before?: string;
  /** Absent when removed. */
  after?: string;
}

export interface ExplainDiff {
  /** The tags compared. */
  beforeTag: string;
  afterTag: string;
  /** When `before` was recorded. */
  beforeAt: string;
  recipe?: { before: string; after: string };
  platforms?: { before: string[]; after: string[] };
  base?: InputChange;
  installer?: InputChange;
  layers: InputChange[];
  /** `layers[3] src/app.py` style names. */
  files: { added: string[]; removed: string[]; changed: string[] };
  /** True when nothing at all differs. */
  empty: boolean;
}

/** Fields of a layer (or base) value that only restate the digests of files listed on their own. */
const FILE_DERIVED_FIELDS = /\b(files|entries|content|pyproject|uvLock|context|contextEntries)="[^"]*"/g;

export function diffExplainRecords(before: ExplainRecord, after: ExplainRecord): ExplainDiff {
  const diff: ExplainDiff = {
    beforeTag: before.tag,
    afterTag: after.tag,
    beforeAt: before.at,
    layers: [],
    files: { added: [], removed: [], changed: [] },
    empty: true,
  };
  if (before.recipe !== after.recipe) diff.recipe = { before: before.recipe, after: after.recipe };
  if (before.platforms.join(",") !== after.platforms.join(",")) diff.platforms = { before: before.platforms, after: after.platforms };

  // Files first: a layer whose only change is its files' digests is then not named again.
  const groupsWithFileChanges = new Set<string>();
  for (const group of union(Object.keys(before.files), Object.keys(after.files))) {
    const old = before.files[group] ?? {};
    const now = after.files[group] ?? {};
    for (const path of union(Object.keys(old), Object.keys(now))) {
      const name = path === "" ? group : `${group} ${path}`;
      if (old[path] === undefined) diff.files.added.push(name);
      else if (now[path] === undefined) diff.files.removed.push(name);
      else if (old[path] !== now[path]) diff.files.changed.push(name);
      else continue;
      groupsWithFileChanges.add(group);
    }
  }

  const oldInputs = new Map(before.inputs.map(([kind, label, value]) => [label, { kind, value }]));
  const newInputs = new Map(after.inputs.map(([kind, label, value]) => [label, { kind, value }]));
  for (const label of union([...oldInputs.keys()], [...newInputs.keys()])) {
    const old = oldInputs.get(label);
    const now = newInputs.get(label);
    if (old?.value === now?.value) continue;
    const kind = now?.kind ?? old!.kind;
    if (kind === "recipe" || kind === "platform") continue; // told above
    const group = kind === "base" ? "context" : label.split(" ")[0]!;
    if (old !== undefined && now !== undefined && groupsWithFileChanges.has(group) && withoutFileDigests(old.value) === withoutFileDigests(now.value)) continue;
    const change: InputChange = { label, ...(old ? { before: old.value } : {}), ...(now ? { after: now.value } : {}) };
    if (kind === "base") diff.base ??= change;
    else if (kind === "installer") diff.installer = change;
    else diff.layers.push(change);
  }
  diff.empty =
    !diff.recipe &&
    !diff.platforms &&
    !diff.base &&
    !diff.installer &&
    diff.layers.length === 0 &&
    diff.files.added.length + diff.files.removed.length + diff.files.changed.length === 0;
  return diff;
}

function withoutFileDigests(value: string): string {
  return value.replace(FILE_DERIVED_FIELDS, "");
}

function union(a: readonly string[], b: readonly string[]): string[] {
  return [...new Set([...a, ...b])];
}

/** A short list: the first `max` names, then `+N more`. */
function some(names: readonly string[], max = 3): string {
  return names.length <= max ? names.join(", ") : `${names.slice(0, max).join(", ")} +${names.length - max} more`;
}

/** One line naming every kind of change: what `kiln build` prints before it builds. */
export function summarizeExplainDiff(diff: ExplainDiff): string {
  if (diff.empty) return `no input changed since ${diff.beforeTag}`;
  const parts: string[] = [];
  const { added, removed, changed } = diff.files;
  if (changed.length) parts.push(`${changed.length === 1 ? "file" : `${changed.length} files`} changed: ${some(changed)}`);
  if (added.length) parts.push(`${added.length === 1 ? "file" : `${added.length} files`} added: ${some(added)}`);
  if (removed.length) parts.push(`${removed.length === 1 ? "file" : `${removed.length} files`} removed: ${some(removed)}`);
  for (const layer of diff.layers) parts.push(`${layer.label} ${layer.before === undefined ? "added" : layer.after === undefined ? "removed" : "changed"}`);
  if (diff.platforms) parts.push(`platforms ${diff.platforms.before.join(",")} → ${diff.platforms.after.join(",")}`);
  if (diff.base) parts.push(`base changed (${diff.base.after ?? "removed"})`);
  if (diff.installer) parts.push(`installer changed (${diff.installer.after ?? "removed"})`);
  if (diff.recipe) parts.push(`Kiln's tag recipe ${diff.recipe.before} → ${diff.recipe.after}`);
  return `since ${diff.beforeTag}: ${parts.join("; ")}`;
}

/** Every change on its own line: `kiln explain --diff`. */
export function formatExplainDiff(diff: ExplainDiff): string[] {
  if (diff.empty) return [`no input changed since ${diff.beforeTag} (recorded ${diff.beforeAt})`];
  const lines = [`since ${diff.beforeTag} (recorded ${diff.beforeAt}):`];
  const change = (what: string, c: InputChange) =>
    c.before === undefined
      ? `  + ${what} ${c.label}: ${c.after}`
      : c.after === undefined
        ? `  - ${what} ${c.label}: ${c.before}`
        : `  ~ ${what} ${c.label}: ${c.before} → ${c.after}`;
  if (diff.recipe) lines.push(`  ~ recipe: ${diff.recipe.before} → ${diff.recipe.after}`);
  if (diff.platforms) lines.push(`  ~ platforms: ${diff.platforms.before.join(", ")} → ${diff.platforms.after.join(", ")}`);
  if (diff.base) lines.push(change("base", diff.base));
  if (diff.installer) lines.push(change("installer", diff.installer));
  for (const layer of diff.layers) lines.push(change("layer", layer));
  for (const name of diff.files.changed) lines.push(`  ~ file ${name}`);
  for (const name of diff.files.added) lines.push(`  + file ${name}`);
  for (const name of diff.files.removed) lines.push(`  - file ${name}`);
  return lines;
}
