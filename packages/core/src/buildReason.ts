/**
 * The engine's side of explain records: before a build, the one-line reason it builds (what changed
 * since the last recorded tag of the same image name: a `build.reason` event); after a build, find or
 * promotion, the record of the tag's inputs (explainRecord.ts); after a push, the same record next to
 * the image in its registry (explainArtifact.ts). None of it ever fails a build: a project directory
 * that cannot be written, or a registry that refuses the artifact, is a warning.
 *
 * KILN_EXPLAIN_RECORDS: unset or 1 — both; `local` — only under .kiln; 0 — neither (nor the reason).
 */
import { attachExplainRecord } from "./explainArtifact.js";
import { diffExplainRecords, summarizeExplainDiff } from "./explainDiff.js";
import { compactRecord, explainBuiltImage, previousExplainRecord, writeExplainRecord, type ExplainRecord } from "./explainRecord.js";
import { emit, type EventListener } from "./events.js";
import type { TagExplanation } from "./hash.js";
import type { Image } from "./image.js";
import { isOciLayoutTarget } from "./reference.js";
import { snapshotTaken } from "./snapshot.js";

/** `KILN_EXPLAIN_RECORDS=0` turns recording (and the build reason) off. */
export const EXPLAIN_RECORDS_ENV = "KILN_EXPLAIN_RECORDS";

function recordsEnabled(): boolean {
  const value = process.env[EXPLAIN_RECORDS_ENV]?.toLowerCase();
  return value !== "0" && value !== "false";
}

function attachEnabled(): boolean {
  return recordsEnabled() && process.env[EXPLAIN_RECORDS_ENV]?.toLowerCase() !== "local";
}

export class BuildHistory {
  private explanation: TagExplanation | undefined;
  private recorded: ExplainRecord | undefined;

  constructor(
    private readonly image: Image,
    private readonly projectDir: string,
    private readonly onEvent: EventListener,
  ) {}

  private explain(): TagExplanation {
    return (this.explanation ??= explainBuiltImage(this.image));
  }

  /** Emits `build.reason` when the image's name had another tag before. */
  reason(): void {
    if (!recordsEnabled() || !this.image.needsBuild) return;
    try {
      const current = compactRecord(this.image, this.explain(), { outcome: "building" });
      const previous = previousExplainRecord(this.projectDir, this.image.name, current.tag);
      if (previous === undefined) return;
      const diff = diffExplainRecords(previous, current);
      emit(this.onEvent, { type: "build.reason", image: this.image.uri, previousTag: previous.tag, reason: summarizeExplainDiff(diff) });
    } catch (error) {
      emit(this.onEvent, { type: "warning", image: this.image.uri, message: `could not tell why it rebuilds: ${(error as Error)?.message ?? String(error)}` });
    }
  }

  /** Records the tag's inputs under `.kiln/explain` (see explainRecord.ts). */
  record(result: { uri?: string | null; digest?: string; outcome: string }): ExplainRecord | undefined {
    if (!recordsEnabled() || !this.image.needsBuild) return undefined;
    // An image with an explicit tag that was found (or promoted) needed no hashing: recording must not add it.
    if (result.outcome !== "built" && !snapshotTaken(this.image)) return undefined;
    try {
      const record = compactRecord(this.image, this.explain(), result);
      writeExplainRecord(this.projectDir, record);
      this.recorded = record;
      return record;
    } catch (error) {
      emit(this.onEvent, {
        type: "warning",
        image: this.image.uri,
        message: `explain record not written in ${this.projectDir}/.kiln: ${(error as Error)?.message ?? String(error)}`,
      });
      return undefined;
    }
  }

  /** `result` after its record is put next to the pushed image (registry images with a digest only). */
  async attached<T extends { uri?: string | null; digest?: string }>(result: T, signal: AbortSignal): Promise<T> {
    const record = this.recorded;
    if (!attachEnabled() || record === undefined || !result.uri || !result.digest || !this.image.registry || isOciLayoutTarget(result.uri)) return result;
    try {
      await attachExplainRecord(result.uri, result.digest, record, { signal, onEvent: this.onEvent });
    } catch (error) {
      if (signal.aborted) throw error;
      emit(this.onEvent, {
        type: "warning",
        image: this.image.uri,
        message: `explain record not attached in the registry: ${(error as Error)?.message ?? String(error)}`,
      });
    }
    return result;
  }
}
