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
 * sha256 or link target — the same per-file digests the content tag uses, from the stat cache). So a
 * stage image is reused exactly when every instruction and every copied byte before and in it is the
 * same. The key is 32 hex characters; stage images are tagged `kiln-stage/<name>:<key>` locally.
 */
import { createHash, type Hash } from "node:crypto";
import {
  digestFileSync,
  listSpecFiles,
  planDockerfile,
  sharedDigestCache,
  SourceNotFoundError,
  TAG_RECIPE_VERSION,
  type Architecture,
  type ContextFiles,
  type DockerfileStep,
  type FileDigestCache,
  type FileGroup,
  type ImageSpec,
  type WalkEntry,
} from "@kiln/core";

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
 * The stages of a Kiln-rendered image (undefined for `fromDockerfile` images, which build in one go).
 * Reads the copied files' digests (cached by stat identity, so a warm plan costs one walk).
 */
export function planStages(
  spec: Readonly<ImageSpec>,
  { buildkit, platform, cache = sharedDigestCache() }: { buildkit: boolean; platform: Architecture; cache?: FileDigestCache | false },
): StagePlan | undefined {
  if (spec.base.kind !== "image") return undefined;
  const plan = planDockerfile(spec, { buildkit });
  const groups = new Map<number, FileGroup>(listSpecFiles(spec as ImageSpec).groups.map((g) => [g.layerIndex, g]));
  const digestCache = cache === false ? undefined : cache;
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
        if (entry.type === "file") chain.str(`${entry.executable ? "F" : "f"} ${digestOf(entry, digestCache)}`);
        else if (entry.type === "symlink") chain.str(`l ${entry.linkTarget ?? ""}`);
        else chain.str("d");
      }
    }
    // Each stage's key is the chain so far: a snapshot of the running hash.
    const key = chain.snapshot().slice(0, 32);
    return { index, steps, consumes, key, ref: `${repository}:${key}` };
  });
  digestCache?.save();
  return { baseRef: plan.baseRef!, preamble: plan.preamble, stages, repository };
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

function digestOf(entry: WalkEntry, cache: FileDigestCache | undefined): string {
  const known = cache?.get(entry.hostPath, entry);
  if (known !== undefined) return known;
  let result: { digest: string; size: number };
  try {
    result = digestFileSync(entry.hostPath);
  } catch (error) {
    throw new SourceNotFoundError(`Cannot read ${JSON.stringify(entry.hostPath)} to key a build stage: ${(error as Error).message}`, {
      hint: "A copied file disappeared or became unreadable while building; retry once the sources are stable.",
      details: { path: entry.hostPath },
      cause: error,
    });
  }
  const { digest, size } = result;
  if (size === entry.size) cache?.set(entry.hostPath, entry, digest);
  return digest;
}

/** Length-prefixed strings into a hash, so no two different inputs frame alike. */
class Framer {
  constructor(private readonly hash: Hash) {}
  uint(n: number): void {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(n);
    this.hash.update(b);
  }
  str(s: string): void {
    const bytes = Buffer.from(s, "utf8");
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
