/**
 * Incremental builds of Kiln-rendered images (stages.ts cuts and keys the stages): find the longest
 * prefix of stages whose images the daemon already holds (tagged `kiln-stage/<name>:<key>`, labelled
 * `dev.kiln.stage=1`, same platform), then build the remaining stages one `POST /build` each, `FROM` the
 * previous stage's image with a context of only that stage's files. The last stage is tagged with the
 * image's own reference and gets the provenance labels; its config (env, workdir, user, labels,
 * entrypoint/cmd) is the one-shot build's, since every stage starts from the previous one's config.
 *
 * `noCache` or `pull` reuse no stage (a fresh base must not sit under old stages).
 */
import { emit, type Architecture } from "@kiln/core";
import { buildOne, sendBuild, type BuildOneOptions, type SentBuild } from "./buildOne.js";
import type { DockerDaemon } from "./daemon.js";
import { stageInUse } from "./prune.js";
import { createStageContext } from "./stageContext.js";
import { LABEL_STAGE, planStages, stageDockerfile, STAGE_LABEL_VALUE, type StagePlan } from "./stages.js";

export interface IncrementalOutcome extends SentBuild {
  /** The stage references this build used or made (kept by prune). */
  stageRefs: string[];
}

export async function buildIncremental(daemon: DockerDaemon, options: BuildOneOptions): Promise<IncrementalOutcome> {
  const { image, platform, onEvent } = options;
  const uri = options.uri ?? image.uri;
  const plan = planStages(image.spec, { buildkit: options.buildkit, platform });
  // One stage (or a Dockerfile image): the one-shot build is the same build.
  if (plan === undefined || plan.stages.length <= 1) return { ...(await buildOne(daemon, { ...options, uri })), stageRefs: [] };

  const { stages } = plan;
  const stageRefs = stages.slice(0, -1).map((stage) => stage.ref);
  const release = stageInUse(stageRefs);
  try {
    const start = options.noCache || options.pull ? 0 : await reusablePrefix(daemon, plan, platform);
    for (let k = 0; k < start; k++) {
      emit(onEvent, { type: "build.stage", image: uri, platform, stage: k, stages: stages.length, ref: stages[k]!.ref, status: "reused" });
    }
    const total: SentBuild = { imageId: "", steps: [], cachedSteps: 0, contextBytes: 0 };
    for (let k = start; k < stages.length; k++) {
      const stage = stages[k]!;
      const last = k === stages.length - 1;
      const dockerfile = stageDockerfile(k === 0 ? plan.baseRef : stages[k - 1]!.ref, stage);
      const sent = await sendBuild(daemon, {
        ...options,
        uri,
        context: createStageContext(image.spec, stage.consumes, dockerfile),
        tagRef: last ? options.tagRef : stage.ref,
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
        stages: stages.length,
        ref: last ? options.tagRef : stage.ref,
        status: "built",
        contextBytes: sent.contextBytes,
      });
    }
    return { ...total, stageRefs };
  } finally {
    release();
  }
}

/** How many leading stages the daemon already holds: the longest present prefix (the last stage excluded). */
async function reusablePrefix(daemon: DockerDaemon, plan: StagePlan, platform: Architecture): Promise<number> {
  for (let k = plan.stages.length - 2; k >= 0; k--) {
    if (await isStageImage(daemon, plan.stages[k]!.ref, platform)) return k + 1;
  }
  return 0;
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
