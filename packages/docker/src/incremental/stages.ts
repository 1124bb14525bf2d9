/**
 * Incremental builds, the plan: core's `planDockerfile` steps cut into stages, each with a content key.
 *
 * A stage starts at a step that copies context files and runs up to the next one (the steps before
 * the first copying step form stage 0, when there are any). Stage k is built `FROM` stage k-1's image
 * (the real base for the first stage) with a context holding only the files its own step copies, so a
 * rebuild after a source edit sends only that source — not the data folder copied before it.
 *
 * Key of stage k: sha256 chained over stages 0..k of (the stage recipe version and the tag recipe
 * version, the base, the installer, the platform, the Dockerfile preamble) then, per stage, the
 * rendered lines of its steps and the content of the files it copies (path, type, executable bit,
 * sha256 or link target — the very digests the content tag was computed from: the build's source
 * snapshot, core's snapshot.ts, so every stage is keyed and sent from the files as they were when the
 * tag was computed, however long the stages before it ran). So a stage image is reused exactly when
 * every instruction and every copied byte before and in it is the same. The key is 32 hex characters;
 * stage images are tagged `kiln-stage/<name>:<key>` locally.
 *
 * A `fromDockerfile` image with layers is staged too: its stage 0 is the user's Dockerfile built alone
 * (`planDockerfileStage`: keyed on the content tag the image would have without its layers, for this one
 * platform — the Dockerfile's bytes, its whole context, build args and target, as hash.ts computes
 * them), and Kiln's layers are planned exactly like a Kiln-rendered image whose base is that stage
 * image (`planStages(spec, { baseRef })`). So no Kiln file is ever in the user's build context.
 */
import { createHash, type Hash } from "node:crypto";
import { TAG_RECIPE_VERSION, type Architecture, type ImageSpec } from "@kiln/core";
import {
  filesFor,
  nameBytes,
  pinnedDigest,
  planDockerfile,
  sharedDigestCache,
  snapshotSpec,
  snapshotTag,
  type ContextFiles,
  type DockerfileStep,
  type FileDigestCache,
  type FileGroup,
  type SourceSnapshot,
  type WalkEntry,
} from "@kiln/core/plugin";

/** Bump when the way stages are cut or keyed changes (old stage images then simply stop matching). */
export const STAGE_RECIPE_VERSION = "kiln-stage-v1";
/** Label on every stage image: prune removes only tags of images carrying it with this value. */
export const LABEL_STAGE = "dev.kiln.stage";
export const STAGE_LABEL_VALUE = "1";
/** Local repository prefix of stage images. */
export const STAGE_REPOSITORY_PREFIX = "kiln-stage/";

export interface Stage {
  index: number;
  steps: DockerfileStep[];
  /** The context files this stage's steps copy. */
  consumes: ContextFiles[];
  /** Content key (32 hex) of this stage and everything before it. */
  key: string;
  /** `kiln-stage/<name>:<key>`. */
  ref: string;
}

export interface StagePlan {
  /** `FROM <base>` of the first stage. */
  baseRef: string;
  preamble: string[];
  stages: Stage[];
  /** `kiln-stage/<name>` */
  repository: string;
}

/** Where this image's stage images are tagged. */
export function stageRepository(name: string): string {
  return `${STAGE_REPOSITORY_PREFIX}${name}`;
}

/**
 * The stages of a Kiln-rendered image. A `fromDockerfile` image's layers are planned only with
 * `baseRef` (its stage 0 image, from `planDockerfileStage`), as if they were rendered on that image;
 * without it the answer is undefined (built in one go).
 * Files and digests come from `snapshot` (the build's, taken with the content tag); without one, a
 * snapshot is taken now (digests cached by stat identity, so a warm plan costs one walk).
 */
export function planStages(
  imageSpec: Readonly<ImageSpec>,
  {
    buildkit,
    platform,
    cache = sharedDigestCache(),
    baseRef,
    snapshot: given,
  }: { buildkit: boolean; platform: Architecture; cache?: FileDigestCache | false; baseRef?: string; snapshot?: SourceSnapshot },
): StagePlan | undefined {
  if (imageSpec.base.kind === "dockerfile" && baseRef === undefined) return undefined;
  const spec = baseRef === undefined ? imageSpec : layersOnStage(imageSpec, baseRef);
  if (spec.base.kind !== "image") return undefined;
  const plan = planDockerfile(spec, { buildkit });
  const snapshot = given ?? snapshotSpec(imageSpec, { cache }).snapshot;
  const groups = new Map<number, FileGroup>(filesFor(spec, snapshot).groups.map((g) => [g.layerIndex, g]));
  const repository = stageRepository(spec.name);

  // Cut before every step that copies context files.
  const cuts: DockerfileStep[][] = [];
  for (const step of plan.steps) {
    if (cuts.length === 0 || step.consumes.length > 0) cuts.push([step]);
    else cuts[cuts.length - 1]!.push(step);
  }

  const chain = new Framer(createHash("sha256"));
  chain.str(STAGE_RECIPE_VERSION);
  chain.str(TAG_RECIPE_VERSION);
  chain.str(spec.base.ref);
  chain.str(spec.base.python ? spec.base.python.join(".") : "");
  chain.str(spec.base.node !== undefined ? String(spec.base.node) : "");
  chain.str(spec.installer);
  chain.str(spec.uvImage);
  chain.str(platform);
  chain.list(plan.preamble);

  const stages = cuts.map((steps, index): Stage => {
    const consumes = steps.flatMap((step) => step.consumes);
    chain.str("stage");
    chain.list(steps.flatMap((step) => step.lines));
    for (const use of consumes) {
      chain.str(`layer ${use.layerIndex}`);
      const entries = consumedEntries(groups.get(use.layerIndex), use);
      chain.uint(entries.length);
      for (const entry of entries) {
        chain.str(entry.contextPath);
        if (entry.type === "file") chain.str(`${entry.executable ? "F" : "f"} ${pinnedDigest(snapshot, entry).toString("hex")}`);
        else if (entry.type === "symlink") chain.str(`l ${entry.linkTarget ?? ""}`);
        else chain.str("d");
      }
    }
    // Each stage's key is the chain so far: a snapshot of the running hash.
    const key = chain.snapshot().slice(0, 32);
    return { index, steps, consumes, key, ref: `${repository}:${key}` };
  });
  return { baseRef: plan.baseRef!, preamble: plan.preamble, stages, repository };
}

/** Stage 0 of a `fromDockerfile` image with layers: the user's Dockerfile built alone. */
export interface DockerfileStage {
  /** Content key (32 hex). */
  key: string;
  /** `kiln-stage/<name>:<key>`. */
  ref: string;
  /** The spec built for it: the image without its layers (its own Dockerfile, context, build args, target). */
  spec: ImageSpec;
}

/**
 * Stage 0 of a `fromDockerfile` image with layers (undefined for any other image). Its key reuses the
 * content tag hash.ts computes for the image without layers on this one platform (Dockerfile bytes
 * and path, context tree, build args, target) — from the build's source snapshot, or one taken now —
 * framed with the stage recipe version.
 */
export function planDockerfileStage(
  spec: Readonly<ImageSpec>,
  { platform, cache = sharedDigestCache(), snapshot }: { platform: Architecture; cache?: FileDigestCache | false; snapshot?: SourceSnapshot },
): DockerfileStage | undefined {
  if (spec.base.kind !== "dockerfile" || spec.layers.length === 0) return undefined;
  const alone: ImageSpec = { ...(spec as ImageSpec), layers: [], platform: [platform] };
  const framer = new Framer(createHash("sha256"));
  framer.str(STAGE_RECIPE_VERSION);
  framer.str("dockerfile");
  framer.str(snapshotTag(alone, snapshot ?? snapshotSpec(alone, { cache }).snapshot));
  const key = framer.snapshot().slice(0, 32);
  const ref = `${stageRepository(spec.name)}:${key}`;
  return { key, ref, spec: alone };
}

/** The spec of an image's layers rendered on a stage image (a `fromDockerfile` image's stage 0). */
export function layersOnStage(spec: Readonly<ImageSpec>, baseRef: string): ImageSpec {
  return { ...(spec as ImageSpec), base: { kind: "image", ref: baseRef } };
}

/** The entries of a layer's group a step copies: all of them, or the named files. */
export function consumedEntries(group: FileGroup | undefined, use: ContextFiles): WalkEntry[] {
  if (group === undefined) return [];
  if (use.names === undefined) return group.entries;
  const names = new Set(use.names);
  return group.entries.filter((entry) => names.has(entry.path));
}

/** The Dockerfile of one stage: `FROM` the previous stage's image (or the base), then its steps. */
export function stageDockerfile(from: string, stage: Stage): string {
  return `${[`FROM ${from}`, ...stage.steps.flatMap((step) => step.lines)].join("\n")}\n`;
}

/** Length-prefixed strings into a hash, so no two different inputs frame alike. A path holding bytes
 * that are not UTF-8 (core's rawNames) is framed as those bytes, so two such names never key alike. */
class Framer {
  constructor(private readonly hash: Hash) {}
  uint(n: number): void {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(n);
    this.hash.update(b);
  }
  str(s: string): void {
    const bytes = nameBytes(s);
    this.uint(bytes.length);
    this.hash.update(bytes);
  }
  list(items: readonly string[]): void {
    this.uint(items.length);
    for (const item of items) this.str(item);
  }
  snapshot(): string {
    return this.hash.copy().digest("hex");
  }
}
