/**
 * Step containers a classic-builder build may leave behind when it loses its daemon, and their
 * removal. The classic builder prints ` ---> Running in <id>` when it starts a step container and
 * `Removing intermediate container <id>` once it has removed it (with `rm`/`forcerm`, also when the
 * step fails). A build that ends with a container started and not removed lost the daemon in between
 * (killed, or its connection cut): dockerd never ran its `forcerm`, and the container outlives it —
 * re-adopted still running by a restarted dockerd when containerd survived, else left stopped.
 *
 * Such a container is recorded (orphanLedger.ts) and removed by force as soon as the same endpoint
 * answers: right away when it still does, else by the next build there.
 *
 * The text stream that announces step containers also carries each RUN step's own output, so a step
 * can print lines that look like the daemon's. What is removed is therefore bounded twice:
 * - the tracker takes only the daemon's shape of a step: a `Step N/M :` line while no container is
 *   open (the daemon removes a step's container before it starts the next step; with rm/forcerm,
 *   which Kiln always sets), then only the FIRST `Running in` after it; a second removal of a
 *   container already removed proves forged lines and stops tracking for that build;
 * - a record is acted on only when the daemon says the container was created within the build that
 *   recorded it: not before `buildStartedAt`, not after `recordedAt` (each give or take CLOCK_SKEW_MS).
 * A step that forges the daemon's lines (its own container ID is its hostname) and then makes the
 * build lose its stream before the daemon's real removal line can still name another container
 * created on that daemon during that build: that residue is documented in docs/reliability.md.
 */
import type { EventListener } from "@kiln/core";
import { emit } from "@kiln/core/plugin";
import type { DockerDaemon } from "../daemon/daemon.js";
import type { OrphanLedger, OrphanRecord } from "./orphanLedger.js";

/** Each daemon request of a sweep gives up after this long (a daemon that is not there must not stall a build). */
const REQUEST_TIMEOUT_MS = 5_000;
/**
 * How far a daemon's clock (`Created`) may differ from ours (`buildStartedAt`, `recordedAt`) either
 * way. Hosts kept by NTP agree within a second; 2 minutes also covers a remote daemon or a VM
 * (Docker Desktop after a sleep) whose clock drifted. Too small only costs a missed cleanup (the
 * record is dropped, the container stays for the user); too large widens the window of containers
 * a forged record could name — so it stays small.
 */
export const CLOCK_SKEW_MS = 2 * 60 * 1000;

/** The step container a build would leave behind now, and when that build began. */
export interface OpenStepContainer {
  id: string;
  buildStartedAt: number;
}

/** The step container a classic build has started and not yet removed, from its progress lines. */
export class StepContainers {
  private open: string | undefined;
  /** A real `Step N/M :` line was seen and its container not yet announced. */
  private awaitingContainer = false;
  private readonly removedIds = new Set<string>();
  /** Forged bookkeeping lines were seen: nothing this build's stream says is trusted any more. */
  private forged = false;

  /** `buildStartedAt`: when the build request was sent (default: now, as the build's stream begins). */
  constructor(readonly buildStartedAt: number = Date.now()) {}

  /** A `Step N/M :` line. While a container is open it is the step's own output, not a new step. */
  step(): void {
    if (this.open === undefined) this.awaitingContainer = true;
  }

  /** A `---> Running in <id>` line: only the first after a real step line is the daemon's. */
  started(id: string): void {
    if (!this.awaitingContainer || this.forged) return;
    this.awaitingContainer = false;
    this.open = id;
  }

  /** A `Removing intermediate container <id>` line. */
  removed(id: string): void {
    // The daemon removes each container once: a second removal means one of them was forged
    // (a step printing its own ID, then a fake step): stop trusting this stream.
    if (this.removedIds.has(id)) {
      this.forged = true;
      this.open = undefined;
      return;
    }
    if (this.open !== id) return; // not the open container: output (say, a nested build's log)
    this.removedIds.add(id);
    this.open = undefined;
  }

  /** The container a build that ends now would leave behind, if any. */
  get current(): OpenStepContainer | undefined {
    return this.open === undefined || this.forged ? undefined : { id: this.open, buildStartedAt: this.buildStartedAt };
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
  /** The ledger directory failed its safety check (orphanLedger.ts): why. Nothing was read, removed or dropped. */
  unsafe?: string;
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
 * A ledger directory that is not safely this user's is not read at all: one `warning` says so.
 * Never throws: a sweep that cannot reach the daemon keeps its records for the next build.
 */
export async function sweepOrphanContainers(daemon: DockerDaemon, ledger: OrphanLedger, options: SweepOptions): Promise<SweepResult> {
  const endpoint = daemon.connection.endpoint;
  const result: SweepResult = { removed: [], dropped: [], kept: [] };
  if (!options.records) {
    const unsafe = safely(() => ledger.unsafeReason());
    if (unsafe) {
      result.unsafe = unsafe;
      emit(options.onEvent, { type: "warning", image: options.image, message: unsafeText(ledger.dir, unsafe) });
      return result;
    }
  }
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
    else
      result.removed.push({
        containerId: record.containerId,
        recordedAt: record.recordedAt,
        wasRunning: outcome.wasRunning,
        ...(record.image ? { image: record.image } : {}),
      });
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
  // The daemon resolved the (short) ID to a container: make sure it is the one recorded — created
  // during the build that recorded it: not after the record (a later container sharing the prefix),
  // not before the build began (an older container a step's output named) — else it is not touched.
  if (!info.Id?.startsWith(record.containerId) || !createdDuring(Date.parse(info.Created ?? ""), record)) return "dropped";
  try {
    await docker.getContainer(info.Id).remove({ force: true, v: true, abortSignal: requestSignal(options) } as { force: boolean }); // dockerode passes abortSignal on
  } catch (error) {
    return failureOutcome(error);
  }
  return { wasRunning: info.State?.Running === true };
}

function createdDuring(created: number, record: OrphanRecord): boolean {
  return created >= record.buildStartedAt - CLOCK_SKEW_MS && created <= record.recordedAt + CLOCK_SKEW_MS; // NaN: false
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

function safely<T>(fn: () => T): T | string {
  try {
    return fn();
  } catch (error) {
    return `it cannot be checked (${(error as Error).message})`;
  }
}

function unsafeText(dir: string, reason: string): string {
  return (
    `Kiln will not use ${dir} to record or remove build step containers stranded by a lost Docker daemon: ${reason}. ` +
    `Only a directory owned by you and writable by nobody else is trusted. Remove it, or point KILN_LOCK_DIR (or XDG_RUNTIME_DIR) at a private directory.`
  );
}

function warningText(endpoint: string, removed: RemovedOrphan[]): string {
  const list = removed
    .map(
      (r) =>
        `${r.containerId}${r.wasRunning ? " (still running)" : ""}${r.image ? ` from the build of ${r.image}` : ""} at ${new Date(r.recordedAt).toISOString()}`,
    )
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
  container: OpenStepContainer,
  options: { image: string; timeoutMs?: number },
): Promise<SweepResult> {
  const record: OrphanRecord = {
    containerId: container.id,
    endpoint: daemon.connection.endpoint,
    recordedAt: Date.now(),
    buildStartedAt: container.buildStartedAt,
    image: options.image,
  };
  try {
    ledger.record(record);
  } catch {
    // Cannot write the record (disk full, read-only, a directory that is not safely ours): still try
    // the removal below — of the container this very build saw, never of anything read from disk.
  }
  return sweepOrphanContainers(daemon, ledger, { records: [record], image: options.image, timeoutMs: options.timeoutMs ?? 2_000 });
}
