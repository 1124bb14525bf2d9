/**
 * Removing superseded stage images: after a successful build, the tags `kiln-stage/<name>:<key>` of the
 * same image name and of a platform this build built, which this build did not use, are removed —
 * only tags whose image carries `dev.kiln.stage=1`, never anything else, never forced (an image a
 * container uses stays). Removing a tag lets Docker drop that stage's own untagged intermediate images,
 * as `docker rmi` does; a stage image that is the parent of a kept image is only untagged.
 *
 * Concurrent builds: stages a running build of this process holds are never removed (`stageInUse`),
 * and neither are stages last used (built, or re-tagged when reused: `Metadata.LastTagTime`) less
 * than a grace period before this build started — another process may be building on them.
 */
import type { Architecture } from "@kiln/core";
import type { DockerDaemon } from "../daemon/daemon.js";
import { LABEL_STAGE, STAGE_LABEL_VALUE } from "./stages.js";

/** How long before a build's start a stage must have last been used for that build to prune it. */
export const DEFAULT_STAGE_PRUNE_GRACE_MS = 10 * 60_000;

const inUse = new Map<string, number>();

/** Marks stage references as used by a running build; returns the release function. */
export function stageInUse(refs: readonly string[]): () => void {
  for (const ref of refs) inUse.set(ref, (inUse.get(ref) ?? 0) + 1);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    for (const ref of refs) {
      const n = (inUse.get(ref) ?? 1) - 1;
      if (n <= 0) inUse.delete(ref);
      else inUse.set(ref, n);
    }
  };
}

export interface PruneStagesOptions {
  /** `kiln-stage/<name>` */
  repository: string;
  /** Stage references this build used or made. */
  keep: ReadonlySet<string>;
  /** Only stages of these platforms are candidates. */
  platforms: readonly Architecture[];
  /** When this build started (ms since the epoch). */
  startedAt: number;
  /** Stages last used less than this long before `startedAt` are kept (default 10 minutes). */
  graceMs?: number;
}

/** Removes superseded stage tags; returns the references removed. Never throws. */
export async function pruneStages(daemon: DockerDaemon, options: PruneStagesOptions): Promise<string[]> {
  const removed: string[] = [];
  try {
    const docker = await daemon.docker();
    const listed = await docker.listImages({ filters: { label: [`${LABEL_STAGE}=${STAGE_LABEL_VALUE}`], reference: [options.repository] } });
    const tagPattern = /^[0-9a-f]{32}$/;
    for (const summary of listed) {
      for (const ref of summary.RepoTags ?? []) {
        const colon = ref.lastIndexOf(":");
        if (ref.slice(0, colon) !== options.repository || !tagPattern.test(ref.slice(colon + 1))) continue;
        if (options.keep.has(ref) || inUse.has(ref)) continue;
        // Re-read the image behind this exact tag: label, platform and age decide.
        const inspected = (await docker
          .getImage(ref)
          .inspect()
          .catch(() => undefined)) as
          | { Os?: string; Architecture?: string; Created?: string; Metadata?: { LastTagTime?: string }; Config?: { Labels?: Record<string, string> | null } }
          | undefined;
        if (inspected?.Config?.Labels?.[LABEL_STAGE] !== STAGE_LABEL_VALUE) continue;
        if (!options.platforms.includes(`${inspected.Os}/${inspected.Architecture}` as Architecture)) continue;
        // LastTagTime is the zero time ("0001-01-01…") for an image never tagged: Created counts then.
        const lastUsed = Math.max(Date.parse(inspected.Created ?? "") || 0, Date.parse(inspected.Metadata?.LastTagTime ?? "") || 0);
        if (!(lastUsed > 0 && lastUsed < options.startedAt - (options.graceMs ?? DEFAULT_STAGE_PRUNE_GRACE_MS))) continue;
        try {
          await docker.getImage(ref).remove();
          removed.push(ref);
        } catch {
          // In use by a container, or already gone: leave it.
        }
      }
    }
  } catch {
    // Pruning is housekeeping: a failure never fails the build it follows.
  }
  return removed;
}
