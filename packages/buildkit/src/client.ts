/**
 * A connection to one BuildKit daemon's Control service: ListWorkers (the reachability probe, and
 * the platforms the daemon runs), Solve with its Status stream, Session, and Info where the daemon
 * has it (the engine's embedded BuildKit before v0.11 answers UNIMPLEMENTED — feature-detected).
 */
import { randomBytes } from "node:crypto";
import type { Architecture } from "@kiln/core";
import {
  decodeListWorkersResponse,
  decodeSolveResponse,
  encodeListWorkersRequest,
  encodeSolveRequest,
  encodeStatusRequest,
  INFO_METHOD,
  LIST_WORKERS_METHOD,
  SOLVE_METHOD,
  STATUS_METHOD,
  type SolveRequest,
  type WorkerRecord,
} from "./controlMessages.js";
import type { BuildKitEndpoint } from "./endpoints.js";
import { GrpcCallError, GrpcCode, type GrpcChannel } from "./grpcClient.js";
import { dialEndpoint, unreachable, type DialOptions } from "./transport.js";

export interface SolveCall {
  /** The daemon's exporter response (image digest, config digest…). */
  readonly result: Promise<Record<string, string>>;
  /** StatusResponse messages as they come; ends when the job does (or the call is lost). */
  readonly status: AsyncGenerator<Buffer>;
}

export class BuildKitClient {
  private constructor(
    readonly endpoint: BuildKitEndpoint,
    readonly channel: GrpcChannel,
    readonly workers: WorkerRecord[],
  ) {}

  /** Connects and lists the daemon's workers; DaemonUnavailableError when it does not answer. */
  static async connect(endpoint: BuildKitEndpoint, options: DialOptions = {}): Promise<BuildKitClient> {
    const channel = await dialEndpoint(endpoint, options);
    try {
      const workers = await listWorkers(channel, options.signal);
      return new BuildKitClient(endpoint, channel, workers);
    } catch (error) {
      channel.close();
      if (options.signal?.aborted) throw error;
      throw unreachable(endpoint, error);
    }
  }

  /** Platforms the daemon's workers run (natively or through emulation it has registered). */
  get platforms(): Architecture[] {
    const out = new Set<string>();
    for (const worker of this.workers) for (const p of worker.platforms) out.add(`${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ""}`);
    return [...out] as Architecture[];
  }

  /** `Info` when the daemon has it (BuildKit ≥ 0.11 standalone); undefined on the engine's embedded BuildKit. */
  async hasInfo(signal?: AbortSignal): Promise<boolean> {
    try {
      await this.channel.unary(INFO_METHOD, Buffer.alloc(0), { signal });
      return true;
    } catch (error) {
      if (error instanceof GrpcCallError && error.status === GrpcCode.UNIMPLEMENTED) return false;
      throw error;
    }
  }

  /** Starts a Solve and follows its Status; aborting `signal` cancels the Solve on the daemon. */
  solve(request: Omit<SolveRequest, "ref"> & { ref?: string }, signal?: AbortSignal): SolveCall {
    const ref = request.ref ?? `kiln-${randomBytes(12).toString("hex")}`;
    const solveAbort = new AbortController();
    const forward = () => solveAbort.abort(signal?.reason);
    if (signal?.aborted) forward();
    signal?.addEventListener("abort", forward, { once: true });
    const result = this.channel
      .unary(SOLVE_METHOD, encodeSolveRequest({ ...request, ref }), { signal: solveAbort.signal })
      .then(decodeSolveResponse)
      .finally(() => signal?.removeEventListener("abort", forward));
    result.catch(() => undefined); // observed by the caller

    // The status stream ends with the job; should it linger once the Solve has answered, it is cut.
    const statusAbort = new AbortController();
    const cut = () => setTimeout(() => statusAbort.abort(), 3000).unref();
    result.then(cut, cut);
    const stopStatus = () => statusAbort.abort(signal?.reason);
    signal?.addEventListener("abort", stopStatus, { once: true });
    const status = this.statusOf(ref, statusAbort.signal, () => signal?.removeEventListener("abort", stopStatus));
    return { result, status };
  }

  private async *statusOf(ref: string, signal: AbortSignal, done: () => void): AsyncGenerator<Buffer> {
    try {
      yield* this.channel.serverStream(STATUS_METHOD, encodeStatusRequest(ref), { signal });
    } catch {
      // Progress lost (or cut) costs detail only; the Solve's own answer decides the outcome.
    } finally {
      done();
    }
  }

  close(): void {
    this.channel.close();
  }
}

async function listWorkers(channel: GrpcChannel, signal?: AbortSignal): Promise<WorkerRecord[]> {
  return decodeListWorkersResponse(await channel.unary(LIST_WORKERS_METHOD, encodeListWorkersRequest(), { signal }));
}
