/**
 * The end-of-run summary of `kiln build` with several images: a table on stderr (image, action, time,
 * digest) and a count line, or one NDJSON `summary` record per image with --json.
 */
import type { BuildAllResult } from "../buildAll.js";
import { serializeError } from "../redact.js";

export interface SummaryRecord {
  type: "summary";
  /** The export (or group member) name; a base pulled in by another image: its URI. */
  image: string;
  uri: string;
  /** found, built, promoted, would-build, would-promote, not-needed, failed or cancelled. */
  action: string;
  durationMs: number;
  digest?: string;
  /** A base built because an image asked for is built on it. */
  dependency: boolean;
  error?: ReturnType<typeof serializeError>;
}

export function summaryRecord(result: BuildAllResult): SummaryRecord {
  return {
    type: "summary",
    image: result.name,
    uri: result.uri,
    action: result.action,
    durationMs: result.durationMs,
    ...(result.digest ? { digest: result.digest } : {}),
    dependency: result.dependency,
    ...(result.error !== undefined ? { error: serializeError(result.error) } : {}),
  };
}

/** The table, one row per image, then e.g. `20 images: 18 built, 2 failed`. */
export function formatSummary(results: readonly BuildAllResult[]): string {
  const rows = results.map((r) => [r.dependency ? `${r.name} (base)` : r.name, r.action, `${(r.durationMs / 1000).toFixed(1)}s`, r.digest ?? "-"]);
  const header = ["IMAGE", "ACTION", "TIME", "DIGEST"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ");
  const counts = new Map<string, number>();
  for (const r of results) counts.set(r.action, (counts.get(r.action) ?? 0) + 1);
  const tally = [...counts].map(([action, n]) => `${n} ${action}`).join(", ");
  return `\n${[line(header), ...rows.map(line)].join("\n")}\n${results.length} images: ${tally}\n`;
}
