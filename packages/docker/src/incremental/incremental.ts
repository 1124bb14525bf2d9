/**
 * Incremental builds (stages.ts cuts and keys the stages): find the longest prefix of stages whose
 * images the daemon already holds (tagged `kiln-stage/<name>:<key>`, labelled `dev.kiln.stage=1`, same
 * platform), then build the remaining stages one `POST /build` each. The last stage is tagged with the
 * image's own reference and gets the provenance labels; its config (env, workdir, user, labels,
 * entrypoint/cmd) is the one-shot build's, since every stage starts from the previous one's config.
 *
 * A Kiln-rendered image's stages are each `FROM` the previous stage's image (the real base for the
 * first) with a context of only that stage's files. A `fromDockerfile` image with layers gets a stage
 * 0 first: the user's Dockerfile alone, with its own context (exactly a plain fromDockerfile build:
 * build args, target), then Kiln's stages on that image — so no Kiln file reaches the user's build.
 *
 * `noCache` or `pull` reuse no stage (a fresh base must not sit under old stages); only the first
 * stage pulls (the others are `FROM` local stage images).
 *
 * Every stage is keyed and sent from one source snapshot, the build's (taken with the content tag):
 * a file saved while an earlier stage runs is not picked up by a later one — the later stage's
 * context fails with SourceChangedError, and the image is neither tagged nor pushed.
 */
import type { Architecture, ImageSpec } from "@kiln/core";
import { createBuildContext, emit, renderDockerfile, type SourceSnapshot } from "@kiln/core/plugin";
import { buildOne, sendBuild, sourcesOf, type BuildOneOptions, type SendBuildOptions, type SentBuild } from "../build/buildOne.js";
import type { DockerDaemon } from "../daemon/daemon.js";
import { stageInUse } from "./prune.js";
import { createStageContext } from "./stageContext.js";
import { layersOnStage, LABEL_STAGE, planDockerfileStage, planStages, stageDockerfile, STAGE_LABEL_VALUE, type StagePlan } from "./stages.js";

export interface IncrementalOutcome extends SentBuild {
  /** The stage references this build used or made (kept by prune). */
  stageRefs: string[];
}

/** One stage to build: where it is tagged, and what its own request sends. */
interface StageUnit {
  ref: string;
  request: () => Pick<SendBuildOptions, "context" | "contextSource" | "target" | "buildArgs">;
}

/** Whether this spec builds in stages when incremental builds are on (and so has stages to prune). */
export function buildsInStages(spec: Readonly<ImageSpec>): boolean {
  return spec.base.kind === "image" || spec.layers.length > 0;
}

export async function buildIncremental(daemon: DockerDaemon, options: BuildOneOptions): Promise<IncrementalOutcome> {
  const { image, platform, onEvent } = options;
  const uri = options.uri ?? image.uri;
  const snapshot = options.snapshot ?? sourcesOf(image, uri);
  const units = stageUnits(image.spec, options, snapshot);
  // One stage (or a Dockerfile image without layers): the one-shot build is the same build.
  if (units === undefined) return { ...(await buildOne(daemon, { ...options, uri, snapshot })), stageRefs: [] };

  const stageRefs = units.slice(0, -1).map((unit) => unit.ref);
  const release = stageInUse(stageRefs);
  try {
    const present = options.noCache || options.pull ? 0 : await reusablePrefix(daemon, units, platform);
    const start = await markReused(daemon, units.slice(0, present));
    for (let k = 0; k < start; k++) {
      emit(onEvent, { type: "build.stage", image: uri, platform, stage: k, stages: units.length, ref: units[k]!.ref, status: "reused" });
    }
    const total: SentBuild = { imageId: "", steps: [], cachedSteps: 0, contextBytes: 0 };
    for (let k = start; k < units.length; k++) {
      const last = k === units.length - 1;
      const sent = await sendBuild(daemon, {
        ...options,
        uri,
        ...units[k]!.request(),
        tagRef: last ? options.tagRef : units[k]!.ref,
        labels: last ? options.labels : { [LABEL_STAGE]: STAGE_LABEL_VALUE },
        pull: k === 0 ? options.pull : undefined,
      });
      total.imageId = sent.imageId;
      total.steps.push(...sent.steps);
      total.cachedSteps += sent.cachedSteps;
      total.contextBytes += sent.contextBytes;
      emit(onEvent, {
        type: "build.stage",
        image: uri,
        platform,
        stage: k,
        stages: units.length,
        ref: last ? options.tagRef : units[k]!.ref,
        status: "built",
        contextBytes: sent.contextBytes,
      });
    }
    return { ...total, stageRefs };
  } finally {
    release();
  }
}

/** The stages to build in order, or undefined when the image builds in one go. */
function stageUnits(spec: Readonly<ImageSpec>, { buildkit, platform }: BuildOneOptions, snapshot: SourceSnapshot): StageUnit[] | undefined {
  if (spec.base.kind === "dockerfile") {
    const base = planDockerfileStage(spec, { platform, snapshot });
    if (base === undefined) return undefined;
    const dockerfileBase = spec.base;
    const first: StageUnit = {
      ref: base.ref,
      // Exactly a plain fromDockerfile build: its own context (Dockerfile in place or hidden), build args, target.
      request: () => {
        const dockerfile = renderDockerfile(base.spec, { buildkit });
        return {
          context: createBuildContext(base.spec, { dockerfile, snapshot }),
          contextSource: { spec: base.spec, dockerfile, snapshot },
          target: dockerfileBase.target,
          buildArgs: Object.fromEntries(dockerfileBase.buildArgs),
        };
      },
    };
    const plan = planStages(spec, { buildkit, platform, baseRef: base.ref, snapshot })!;
    return [first, ...kilnUnits(layersOnStage(spec, base.ref), plan, snapshot)];
  }
  const plan = planStages(spec, { buildkit, platform, snapshot });
  if (plan === undefined || plan.stages.length <= 1) return undefined;
  return kilnUnits(spec, plan, snapshot);
}

/** Kiln-rendered stages: `FROM` the previous stage (the plan's base for the first), only their own files. */
function kilnUnits(spec: Readonly<ImageSpec>, plan: StagePlan, snapshot: SourceSnapshot): StageUnit[] {
  return plan.stages.map((stage, k) => ({
    ref: stage.ref,
    request: () => ({ context: createStageContext(spec, stage.consumes, stageDockerfile(k === 0 ? plan.baseRef : plan.stages[k - 1]!.ref, stage), snapshot) }),
  }));
}

/** How many leading stages the daemon already holds: the longest present prefix (the last stage excluded). */
async function reusablePrefix(daemon: DockerDaemon, units: readonly StageUnit[], platform: Architecture): Promise<number> {
  for (let k = units.length - 2; k >= 0; k--) {
    if (await isStageImage(daemon, units[k]!.ref, platform)) return k + 1;
  }
  return 0;
}

/**
 * Re-tags each reused stage (same tag, same image): the daemon records the time as the image's
 * `Metadata.LastTagTime`, which tells another process's prune that the stage is in use. Returns how
 * many leading stages are still there to build on (one pruned meanwhile is built again).
 */
async function markReused(daemon: DockerDaemon, reused: readonly StageUnit[]): Promise<number> {
  const docker = await daemon.docker();
  for (let k = 0; k < reused.length; k++) {
    const ref = reused[k]!.ref;
    const colon = ref.lastIndexOf(":");
    try {
      await docker.getImage(ref).tag({ repo: ref.slice(0, colon), tag: ref.slice(colon + 1) });
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode === 404) return k;
      throw daemon.translate(error);
    }
  }
  return reused.length;
}

/** `GET /images/{ref}/json` (a read): present, labelled as a stage, and of this platform. */
export async function isStageImage(daemon: DockerDaemon, ref: string, platform?: Architecture): Promise<boolean> {
  const docker = await daemon.docker();
  try {
    const inspected = (await docker.getImage(ref).inspect()) as { Os?: string; Architecture?: string; Config?: { Labels?: Record<string, string> | null } };
    if (inspected.Config?.Labels?.[LABEL_STAGE] !== STAGE_LABEL_VALUE) return false;
    return platform === undefined || `${inspected.Os}/${inspected.Architecture}` === platform;
  } catch (error) {
    if ((error as { statusCode?: number }).statusCode === 404) return false;
    throw daemon.translate(error);
  }
}
