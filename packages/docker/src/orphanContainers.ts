/**
 * Step containers a classic-builder build may leave behind when it loses its daemon, and their
 * removal. The classic builder prints ` ---> Running in <id>` when it starts a step container and
 * `Removing intermediate container <id>` once it has removed it (with `rm`/`forcerm`, also when the
 * step fails). A build that ends with a container started and not removed lost the daemon in between
 * (killed, or its connection cut): dockerd never ran its `forcerm`, and the container outlives it —
 * re-adopted still running by a restarted dockerd when containerd survived, else left stopped.
 *
 * Such a container is recorded (orphanLedger.ts) and removed by force as soon as the same endpoint
 * answers: right away when it still does, else by the next build there. Only containers Kiln itself
 * saw its own builds start are ever removed, and only when the daemon says the container was created
 * before Kiln recorded it.
 */
import { emit, type EventListener } from "@kiln/core";
import type { DockerDaemon } from "./daemon.js";
import type { OrphanLedger, OrphanRecord } from "./orphanLedger.js";

/** Each daemon request of a sweep gives up after this long (a daemon that is not there must not stall a build). */
const REQUEST_TIMEOUT_MS = 5_000;
/** A remote daemon's clock may run ahead of ours: a container created this much "after" the record still counts. */
const CLOCK_SKEW_MS = 10 * 60 * 1000;

/** The step container a classic build has started and not yet removed, from its progress lines. */
export class StepContainers {
  private open: string | undefined;

  started(id: string): void {
    this.open = id;
  }

  removed(id: string): void {
    if (this.open === id) this.open = undefined;
  }

  /** The container a build that ends now would leave behind, if any. */
  get current(): string | undefined {
    return this.open;
  }
}

export interface RemovedOrphan {
  containerId: string;
  image?: string;
  recordedAt: number;
  /** It was still running (a restarted dockerd re-adopted it). */
  wasRunning: boolean;
}

export interface SweepResult {
  removed: RemovedOrphan[];
  /** Records dropped without a removal: the container was already gone (or is not the one recorded). */
  dropped: string[];
  /** Records kept for a later build: the daemon did not answer (or refused for now). */
  kept: string[];
}

export interface SweepOptions {
  /** Only these records (the right-away attempt); default: every record for the daemon's endpoint. */
  records?: OrphanRecord[];
  /** The image of the build that sweeps, for the warning event. */
  image: string;
  onEvent?: EventListener;
  signal?: AbortSignal;
  timeoutMs?: number;
}

/**
 * Removes recorded containers from the daemon (force: a re-adopted one may still run), forgets each
 * record once its container is removed or found gone, and emits one `warning` naming what it removed.
 * Never throws: a sweep that cannot reach the daemon keeps its records for the next build.
 */
export async function sweepOrphanContainers(daemon: DockerDaemon, ledger: OrphanLedger, options: SweepOptions): Promise<SweepResult> {
  const endpoint = daemon.connection.endpoint;
  const result: SweepResult = { removed: [], dropped: [], kept: [] };
  let records: OrphanRecord[];
  try {
    records = options.records ?? ledger.list(endpoint);
  } catch {
    return result;
  }
  if (records.length === 0) return result;
  let docker;
  try {
    docker = await daemon.docker();
  } catch {
    result.kept.push(...records.map((r) => r.containerId));
    return result;
  }
  for (const [index, record] of records.entries()) {
    const outcome = await removeOne(docker, record, options);
    if (outcome === "unreachable") {
      // The daemon is not there: every other request would fail the same way.
      result.kept.push(...records.slice(index).map((r) => r.containerId));
      break;
    }
    if (outcome === "kept") {
      result.kept.push(record.containerId);
      continue;
    }
    ledger.drop(endpoint, record.containerId);
    if (outcome === "dropped") result.dropped.push(record.containerId);
    else result.removed.push({ containerId: record.containerId, recordedAt: record.recordedAt, wasRunning: outcome.wasRunning, ...(record.image ? { image: record.image } : {}) });
  }
  if (result.removed.length > 0) emit(options.onEvent, { type: "warning", image: options.image, message: warningText(endpoint, result.removed) });
  return result;
}

type RemoveOutcome = { wasRunning: boolean } | "dropped" | "kept" | "unreachable";

async function removeOne(docker: Awaited<ReturnType<DockerDaemon["docker"]>>, record: OrphanRecord, options: SweepOptions): Promise<RemoveOutcome> {
  const container = docker.getContainer(record.containerId);
  let info: { Id?: string; Created?: string; State?: { Running?: boolean } };
  try {
    info = await container.inspect({ abortSignal: requestSignal(options) });
  } catch (error) {
    return failureOutcome(error);
  }
  // The daemon resolved the (short) ID to a container: make sure it is the one recorded — it existed
  // before Kiln recorded it — so a later container sharing the prefix is never touched.
  const created = Date.parse(info.Created ?? "");
  if (!info.Id?.startsWith(record.containerId) || !(created <= record.recordedAt + CLOCK_SKEW_MS)) return "dropped";
  try {
    await docker.getContainer(info.Id).remove({ force: true, v: true, abortSignal: requestSignal(options) } as { force: boolean }); // dockerode passes abortSignal on
  } catch (error) {
    return failureOutcome(error);
  }
  return { wasRunning: info.State?.Running === true };
}

/** 404: already gone; another 4xx (an ambiguous ID): cannot be ours for sure; 409/5xx: try again later; no answer: unreachable. */
function failureOutcome(error: unknown): RemoveOutcome {
  const status = (error as { statusCode?: unknown })?.statusCode;
  if (typeof status !== "number") return "unreachable";
  if (status === 404) return "dropped";
  if (status === 409 || status >= 500) return "kept";
  return "dropped";
}

function requestSignal(options: SweepOptions): AbortSignal {
  const timeout = AbortSignal.timeout(options.timeoutMs ?? REQUEST_TIMEOUT_MS);
  return options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
}

function warningText(endpoint: string, removed: RemovedOrphan[]): string {
  const list = removed
    .map((r) => `${r.containerId}${r.wasRunning ? " (still running)" : ""}${r.image ? ` from the build of ${r.image}` : ""} at ${new Date(r.recordedAt).toISOString()}`)
    .join(", ");
  return (
    `Removed ${removed.length} build step container${removed.length === 1 ? "" : "s"} left on ${endpoint} by an earlier Kiln build ` +
    `that lost the Docker daemon mid-step (dockerd stopped before it could clean up): ${list}`
  );
}

/**
 * A build failed with its step container still open: record it, then try to remove it right away
 * (the daemon is usually still gone, so it usually stays recorded for the next build). No warning
 * here: the build's own error already tells what happened.
 */
export async function recordLostStepContainer(
  daemon: DockerDaemon,
  ledger: OrphanLedger,
  containerId: string,
  options: { image: string; timeoutMs?: number },
): Promise<SweepResult> {
  const record: OrphanRecord = { containerId, endpoint: daemon.connection.endpoint, recordedAt: Date.now(), image: options.image };
  try {
    ledger.record(record);
  } catch {
    // Cannot write the record (disk full, read-only): still try the removal below.
  }
  return sweepOrphanContainers(daemon, ledger, { records: [record], image: options.image, timeoutMs: options.timeoutMs ?? 2_000 });
}
