/**
 * The build context of one stage: only the files its own steps copy, laid out exactly as in the
 * one-shot context (`kiln-layers/<i>/…`), streamed by core's `createBuildContext` from the build's
 * source snapshot (the files and digests the content tag was computed from).
 *
 * It is the context of a copy of the spec whose other layers are blanked (an empty `labels` layer keeps
 * every layer index in place; `dockerIgnore` layers stay, since they decide what later folders copy).
 * A node project's install step copies package.json + lockfile but its context carries the project
 * folder (the context is per layer); that step is rebuilt only when one of those two files changes.
 */
import type { ImageSpec, Layer } from "@kiln/core";
import { createBuildContext, type BuildContext, type ContextFiles, type SourceSnapshot } from "@kiln/core/plugin";

const BLANK: Layer = { kind: "labels", labels: [] };

/** `snapshot`: the build's (incremental.ts always passes it); without one, the stage's files are snapshotted now. */
export function createStageContext(spec: Readonly<ImageSpec>, consumes: readonly ContextFiles[], dockerfile: string, snapshot?: SourceSnapshot): BuildContext {
  const keep = new Set(consumes.map((use) => use.layerIndex));
  const layers = spec.layers.map((layer, index) => (keep.has(index) || layer.kind === "dockerIgnore" ? layer : BLANK));
  return createBuildContext({ ...spec, layers }, snapshot ? { dockerfile, snapshot } : { dockerfile });
}
