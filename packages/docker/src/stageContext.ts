/**
 * The build context of one stage: only the files its own steps copy, laid out exactly as in the
 * one-shot context (`kiln-layers/<i>/…`), streamed by core's `createBuildContext`.
 *
 * It is the context of a copy of the spec whose other layers are blanked (an empty `labels` layer keeps
 * every layer index in place; `dockerIgnore` layers stay, since they decide what later folders copy).
 * A node project's install step copies package.json + lockfile but its context carries the project
 * folder (the context is per layer); that step is rebuilt only when one of those two files changes.
 */
import { createBuildContext, type BuildContext, type ContextFiles, type ImageSpec, type Layer } from "@kiln/core";

const BLANK: Layer = { kind: "labels", labels: [] };

export function createStageContext(spec: Readonly<ImageSpec>, consumes: readonly ContextFiles[], dockerfile: string): BuildContext {
  const keep = new Set(consumes.map((use) => use.layerIndex));
  const layers = spec.layers.map((layer, index) => (keep.has(index) || layer.kind === "dockerIgnore" ? layer : BLANK));
  return createBuildContext({ ...spec, layers }, { dockerfile });
}
