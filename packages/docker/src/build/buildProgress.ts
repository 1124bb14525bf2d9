/**
 * Follows one build's message stream (classic or BuildKit) to its end: turns it into `build.step` /
 * `build.log` events, remembers a log tail per step, and returns the built image ID — or throws
 * `BuildFailedError` with the failing step and the last lines of its log when the stream carries an
 * error (which the Engine reports inside an HTTP 200 response).
 *
 * Log text is redacted a whole line at a time, never a chunk at a time (logLines.ts): BuildKit cuts a
 * step's output anywhere, even inside a multi-byte character or a secret, so each step and stream is
 * decoded with its own streaming UTF-8 decoder and a partial line waits for the rest. The classic
 * builder's messages are already text (the daemon itself turns a character cut between two messages
 * into U+FFFD, which no client can undo); they are joined into whole lines the same way.
 */
import { BuildFailedError, type Architecture, type EventListener } from "@kiln/core";
import { emit } from "@kiln/core/plugin";
import { decodeTraceAux, type TraceVertex } from "./buildkitTrace.js";
import { readJsonMessages, type EngineMessage } from "../daemon/jsonStream.js";
import { LogLineAssembler } from "./logLines.js";

const LOG_TAIL_LINES = 20;

export interface BuildProgressOptions {
  image: string;
  platform?: Architecture;
  onEvent?: EventListener;
  /** Scrubs secrets (build arg values, credentials) from text before it leaves this module. */
  redact?: (text: string) => string;
  /**
   * Classic builder: told of each step line, each step container start and each removal, exactly as
   * the stream shows them — a step's own output can print look-alikes, so the tracker decides what
   * counts (orphanContainers.ts StepContainers).
   */
  stepContainers?: { step(): void; started(id: string): void; removed(id: string): void };
}

export interface BuildOutcome {
  imageId: string;
  steps: string[];
  /** Steps taken from the build cache. */
  cachedSteps: number;
}

/** Keeps the last N lines of a log. */
class Tail {
  readonly lines: string[] = [];
  push(line: string): void {
    this.lines.push(line);
    if (this.lines.length > LOG_TAIL_LINES) this.lines.shift();
  }
}

export async function followBuild(stream: AsyncIterable<Buffer | string>, options: BuildProgressOptions): Promise<BuildOutcome> {
  const redact = options.redact ?? ((t: string) => t);
  const state = new BuildState(options, redact);
  for await (const message of readJsonMessages(stream)) state.handle(message);
  return state.finish();
}

class BuildState {
  private imageId: string | undefined;
  private readonly steps: string[] = [];
  private cachedSteps = 0;
  private currentStep: string | undefined;
  private readonly allLogs = new Tail();
  private readonly stepLogs = new Map<string, Tail>();
  private error: string | undefined;
  private failedStep: string | undefined;
  /** BuildKit: vertex digest → vertex, and the log of each vertex and stream being reassembled. */
  private readonly vertexes = new Map<string, TraceVertex & { announced: boolean }>();
  private readonly vertexLogs = new Map<string, { vertex: string; lines: LogLineAssembler }>();
  /** Classic builder: the output line being reassembled across messages. */
  private readonly classicLines: LogLineAssembler;

  constructor(
    private readonly options: BuildProgressOptions,
    private readonly redact: (t: string) => string,
  ) {
    this.classicLines = new LogLineAssembler({ redact });
  }

  handle(message: EngineMessage): void {
    if (message.errorDetail || message.error) {
      this.error = message.errorDetail?.message || message.error || "unknown build error";
      this.failedStep ??= this.currentStep;
      return;
    }
    if (message.id === "moby.buildkit.trace" && typeof message.aux === "string") {
      this.handleTrace(message.aux);
      return;
    }
    const aux = message.aux as { ID?: string } | undefined;
    if (aux && typeof aux === "object" && typeof aux.ID === "string") {
      this.imageId = aux.ID;
      return;
    }
    if (typeof message.stream === "string") this.handleClassicText(message.stream);
  }

  /**
   * Classic builder: "Step 2/5 : RUN …" starts a step; " ---> Using cache" marks it cached;
   * " ---> Running in <id>" / "Removing intermediate container <id>" bracket its container.
   */
  private handleClassicText(text: string): void {
    // The daemon writes its own lines as messages of their own: one never continues a step's
    // unfinished output line (`printf abc` then " ---> 1a2b3c4d5e6f").
    const lines = !this.classicLines.empty && CLASSIC_CONTROL.test(text) ? this.classicLines.end() : [];
    lines.push(...this.classicLines.push(text));
    for (const line of lines) this.handleClassicLine(line);
  }

  private handleClassicLine(line: string): void {
    if (!line.trim()) return;
    const step = /^Step (\d+)\/(\d+) : (.*)$/.exec(line);
    if (step) {
      this.options.stepContainers?.step();
      this.startStep(step[3]!, Number(step[1]), Number(step[2]), false);
      return;
    }
    if (/^ ---> Using cache$/.test(line)) {
      this.cachedSteps++;
      return;
    }
    const running = /^ ---> Running in ([0-9a-f]{12})$/.exec(line);
    if (running) {
      this.options.stepContainers?.started(running[1]!);
      return;
    }
    // Printed after the daemon removed it (forcerm prints it for a failed step too).
    const removed = /^Removing intermediate container ([0-9a-f]{12})$/.exec(line);
    if (removed) {
      this.options.stepContainers?.removed(removed[1]!);
      return;
    }
    if (/^ ---> [0-9a-f]{12}$/.test(line) || /^Removing intermediate container/.test(line)) return;
    this.log(this.currentStep, line);
  }

  private handleTrace(aux: string): void {
    let status;
    try {
      status = decodeTraceAux(aux);
    } catch {
      return; // A message we cannot decode only costs us progress detail, never the build.
    }
    for (const v of status.vertexes) {
      const known = this.vertexes.get(v.digest);
      const merged = { ...known, ...v, name: v.name || known?.name || "", announced: known?.announced ?? false };
      this.vertexes.set(v.digest, merged);
      if (!merged.announced && (merged.started !== undefined || merged.cached) && !isInternalVertex(merged.name)) {
        merged.announced = true;
        const numbered = /^\[(?:[^\]\s]+\s)?(\d+)\/(\d+)\]\s/.exec(merged.name);
        this.startStep(merged.name, numbered ? Number(numbered[1]) : undefined, numbered ? Number(numbered[2]) : undefined, merged.cached);
        if (merged.cached) this.cachedSteps++;
      }
      if (v.error) {
        this.failedStep ??= merged.name;
        this.error ??= v.error;
      }
    }
    for (const log of status.logs) {
      const key = `${log.vertex}\0${log.stream}`;
      let entry = this.vertexLogs.get(key);
      if (!entry) this.vertexLogs.set(key, (entry = { vertex: log.vertex, lines: new LogLineAssembler({ redact: this.redact }) }));
      const name = this.vertexes.get(log.vertex)?.name;
      for (const line of entry.lines.push(log.data)) if (line.trim()) this.log(name, line);
    }
    // A finished step's unfinished last line is complete now.
    for (const v of status.vertexes) if (v.completed !== undefined || v.error) this.endVertexLogs(v.digest);
  }

  /** Releases what is left of the logs of one vertex (all of them when `digest` is undefined). */
  private endVertexLogs(digest: string | undefined): void {
    for (const [key, { vertex, lines }] of this.vertexLogs) {
      if (digest !== undefined && vertex !== digest) continue;
      this.vertexLogs.delete(key);
      for (const line of lines.end()) if (line.trim()) this.log(this.vertexes.get(vertex)?.name, line);
    }
  }

  private startStep(step: string, index: number | undefined, total: number | undefined, cached: boolean): void {
    const clean = this.redact(step);
    this.currentStep = clean;
    this.steps.push(clean);
    emit(this.options.onEvent, {
      type: "build.step",
      image: this.options.image,
      ...(this.options.platform ? { platform: this.options.platform } : {}),
      step: clean,
      ...(index !== undefined ? { index } : {}),
      ...(total !== undefined ? { total } : {}),
      cached,
    });
  }

  private log(step: string | undefined, rawLine: string): void {
    const line = this.redact(rawLine);
    const cleanStep = step === undefined ? undefined : this.redact(step);
    this.allLogs.push(line);
    if (cleanStep) {
      let tail = this.stepLogs.get(cleanStep);
      if (!tail) this.stepLogs.set(cleanStep, (tail = new Tail()));
      tail.push(line);
    }
    emit(this.options.onEvent, {
      type: "build.log",
      image: this.options.image,
      ...(this.options.platform ? { platform: this.options.platform } : {}),
      ...(cleanStep ? { step: cleanStep } : {}),
      line,
    });
  }

  finish(): BuildOutcome {
    this.endVertexLogs(undefined);
    for (const line of this.classicLines.end()) this.handleClassicLine(line);
    if (this.error !== undefined || !this.imageId) {
      const step = this.failedStep ? this.redact(this.failedStep) : undefined;
      const tail = (step && this.stepLogs.get(step)?.lines.length ? this.stepLogs.get(step)!.lines : this.allLogs.lines).slice();
      const reason = this.redact(this.error ?? "the daemon ended the build without producing an image");
      const where = step ? ` at step ${JSON.stringify(step)}` : "";
      const platform = this.options.platform ? ` (${this.options.platform})` : "";
      throw new BuildFailedError(
        `Build of ${this.options.image}${platform} failed${where}: ${reason}` +
          (tail.length ? `\n--- last ${tail.length} log lines ---\n${tail.join("\n")}` : ""),
        {
          hint: step
            ? `Fix the failing step${tail.length ? " (its log tail is above)" : " (it printed no log; the reason is above)"} and build again; \`kiln dockerfile <spec>\` shows the Dockerfile Kiln rendered.`
            : "Check the daemon's log and the rendered Dockerfile (`kiln dockerfile <spec>`).",
          details: { step, logTail: tail, platform: this.options.platform, reason },
        },
      );
    }
    return { imageId: this.imageId, steps: this.steps, cachedSteps: this.cachedSteps };
  }
}

/** Lines the classic builder itself writes, each as a message of its own. */
const CLASSIC_CONTROL = /^(?:Step \d+\/\d+ : | ---> |Removing intermediate container |Successfully (?:built|tagged) )/;

/** BuildKit's bookkeeping vertexes (context transfer, metadata loads, exporting) are not user steps. */
function isInternalVertex(name: string): boolean {
  return !/^\[(?:[^\]\s]+\s)?\d+\/\d+\]\s/.test(name);
}
