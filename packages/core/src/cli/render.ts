/**
 * Progress renderers for engine events, all writing to stderr (stdout carries only results):
 *  - "json":  one event per line (NDJSON), exactly the typed BuildEvent;
 *  - "plain": one line per meaningful step, for logs and pipes (push progress only on status change),
 *             under a line naming the image (repeated only when another image's lines came between);
 *  - "tty":   a live block per image redrawn in place — checks, current step, recent log lines and a
 *             bar per pushed layer — then a permanent summary line.
 * Events never carry credentials; log lines are redacted again here as a last line of defence.
 */
import type { BuildEvent, EventListener } from "../events.js";

export type RenderMode = "json" | "plain" | "tty";

export interface Renderer {
  onEvent: EventListener;
  /** Stops redrawing and leaves the final state on screen. */
  close(): void;
}

export function createRenderer(mode: RenderMode, out: NodeJS.WritableStream): Renderer {
  if (mode === "json") return { onEvent: (e) => void out.write(`${JSON.stringify(e)}\n`), close() {} };
  if (mode === "plain") return createPlainRenderer(out);
  return createTtyRenderer(out as NodeJS.WriteStream);
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}

/** BuildKit's own step names carry their counter (`[stage-0 1/2] RUN …`, `[2/3] COPY …`). */
const OWN_COUNTER = /^\[(?:[^\]\s]+\s)?\d+\/\d+\]\s/;

function describeStep(e: Extract<BuildEvent, { type: "build.step" }>): string {
  // One counter per line: the step's own when its name has one (else `[1/2] [stage-0 1/2] RUN …`).
  const counter = e.index !== undefined && !OWN_COUNTER.test(e.step) ? `[${e.index}${e.total ? `/${e.total}` : ""}] ` : "";
  return `${e.platform ? `${e.platform} ` : ""}${counter}${e.step}${e.cached ? " (cached)" : ""}`;
}

/** A registry wait as people say it: "2 s", "0.3 s". */
function waitText(ms: number): string {
  return ms >= 1000 && ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}

function quota(e: Extract<BuildEvent, { type: "registry.ratelimit" }>): string {
  return e.limit !== undefined || e.remaining !== undefined ? ` (${e.remaining ?? "?"}/${e.limit ?? "?"} left)` : "";
}

/** The one-line text of an event, or undefined for events not worth a line. */
export function describeEvent(e: BuildEvent, pushStatus?: Map<string, string>): string | undefined {
  switch (e.type) {
    case "check.start":
      return `check ${e.checker} (${e.platforms.join(", ")})`;
    case "check.result":
      return `check ${e.checker}: ${e.result}${e.uri ? ` ${e.uri}` : ""}${e.error ? ` — ${e.error.message}` : ""}`;
    case "check.skipped":
      return `check skipped (${e.reason})`;
    case "build.start":
      return e.dryRun ? `would build with ${e.builder} (${e.platforms.join(", ")})` : `build with ${e.builder} (${e.platforms.join(", ")})`;
    case "build.reason":
      return `why: ${e.reason}`;
    case "base.pinned":
      return `base ${e.base} pinned to ${e.digest}`;
    case "build.step":
      return `step ${describeStep(e)}`;
    case "build.log":
      return `  │ ${e.line}`;
    case "build.stage":
      return `stage ${e.stage + 1}/${e.stages}${e.platform ? ` ${e.platform}` : ""} ${e.status}${e.status === "built" && e.contextBytes !== undefined ? ` (${bytes(e.contextBytes)} of context sent)` : ""}`;
    case "build.platforms-present":
      return `platforms present: ${e.present.join(", ") || "none"}; missing: ${e.missing.join(", ") || "none"}`;
    case "push.progress": {
      const previous = pushStatus?.get(e.layer);
      pushStatus?.set(e.layer, e.status);
      return previous === e.status ? undefined : `push ${e.layer}: ${e.status}`;
    }
    case "push.done":
      return `pushed${e.platform ? ` ${e.platform}` : ""}${e.digest ? ` ${e.digest}` : ""}`;
    case "registry.ratelimit":
      // A retried 429 says how long it waits; the retry event that follows it adds nothing.
      if (e.waitMs !== undefined) return `registry ${e.host} rate-limited, retrying in ${waitText(e.waitMs)}${quota(e)}`;
      return e.status === 429 ? `registry ${e.host} rate-limited${quota(e)}` : `rate limit on ${e.host}${quota(e)}`;
    case "registry.retry":
      if (e.status === 429) return undefined;
      return `registry ${e.host} ${e.status !== undefined ? `answered HTTP ${e.status}` : `failed (${e.reason})`}, retrying in ${waitText(e.waitMs)} (retry ${e.attempt})`;
    case "lock.wait":
      return e.provider && e.provider !== "file"
        ? `waiting for ${e.holder ?? "another host"} building the same image (${e.provider} lease${e.waitedMs ? `, ${seconds(e.waitedMs)} so far` : ""})…`
        : "waiting for another kiln process building the same image…";
    case "lock.acquired":
      return e.waitedMs >= 1000 || e.fallback
        ? `build lease taken from ${e.provider}${e.fallback ? " (fallback)" : ""} after ${seconds(e.waitedMs)}`
        : undefined;
    case "lock.lost":
      return `build lease lost (${e.provider}): ${e.message}`;
    case "cache.result":
      return `cache ${e.cache}: ${e.result}${e.digest ? ` ${e.digest}` : ""}${e.message ? ` — ${e.message}` : ""}`;
    case "promote.start":
      return `promote from ${e.source} (${e.mode === "mount" ? "cross-repository mount" : "streamed"}${e.platforms.length ? `, ${e.platforms.join(", ")}` : ""})`;
    case "promote.done":
      return `promoted ${e.digest}: ${e.mounted} blob(s) mounted, ${e.copied} copied (${bytes(e.bytesCopied)}), ${e.existing} already there (${seconds(e.durationMs)})`;
    case "done":
      if (e.promotedFrom) return `promoted ${e.uri}${e.digest ? ` ${e.digest}` : ""} from ${e.promotedFrom} (${seconds(e.durationMs)})`;
      return e.dryRun && !e.built
        ? `done ${e.uri} (dry run, ${seconds(e.durationMs)})`
        : `${e.built ? "built" : "present"} ${e.uri}${e.digest ? ` ${e.digest}` : ""} (${seconds(e.durationMs)})`;
    case "warning":
      return `warning: ${e.message}`;
    case "error":
      return `error: ${e.error.message}`;
  }
}

function createPlainRenderer(out: NodeJS.WritableStream): Renderer {
  const pushStatus = new Map<string, string>();
  let current: string | undefined;
  return {
    onEvent(e) {
      const text = describeEvent(e, pushStatus);
      if (text === undefined) return;
      // The URI once, not on every line; again only when lines of several images interleave.
      if (e.image !== current) out.write(`${(current = e.image)}:\n`);
      out.write(`  ${text}\n`);
    },
    close() {},
  };
}

interface ImageState {
  lines: string[];
  step?: string;
  logs: string[];
  layers: Map<string, { status: string; current?: number; total?: number }>;
  finished?: string;
}

const BAR_WIDTH = 24;

function bar(current: number | undefined, total: number | undefined): string {
  if (!total || current === undefined) return " ".repeat(BAR_WIDTH);
  const filled = Math.max(0, Math.min(BAR_WIDTH, Math.round((current / total) * BAR_WIDTH)));
  return `${"█".repeat(filled)}${"░".repeat(BAR_WIDTH - filled)}`;
}

function bytes(n: number | undefined): string {
  if (n === undefined) return "";
  return n < 1024 * 1024 ? `${(n / 1024).toFixed(0)} KiB` : `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function createTtyRenderer(out: NodeJS.WriteStream): Renderer {
  const images = new Map<string, ImageState>();
  let drawnLines = 0;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const width = () => Math.max(40, (out.columns ?? 100) - 1);
  const clip = (s: string) => (s.length > width() ? `${s.slice(0, width() - 1)}…` : s);

  const block = (): string[] => {
    const lines: string[] = [];
    for (const [uri, state] of images) {
      if (state.finished) continue;
      lines.push(clip(`● ${uri}`));
      for (const line of state.lines.slice(-3)) lines.push(clip(`  ${line}`));
      if (state.step) lines.push(clip(`  ▸ ${state.step}`));
      for (const log of state.logs.slice(-4)) lines.push(clip(`    ${log}`));
      for (const [layer, l] of state.layers) {
        lines.push(clip(`  ${layer.slice(0, 12).padEnd(12)} ${bar(l.current, l.total)} ${l.status} ${l.total ? `${bytes(l.current)}/${bytes(l.total)}` : ""}`));
      }
    }
    return lines;
  };
  const erase = () => {
    if (drawnLines > 0) out.write(`\x1b[${drawnLines}A\x1b[0J`);
    drawnLines = 0;
  };
  const draw = () => {
    timer = undefined;
    if (closed) return;
    erase();
    const lines = block();
    if (lines.length) out.write(`${lines.join("\n")}\n`);
    drawnLines = lines.length;
  };
  const schedule = () => {
    if (!timer && !closed) timer = setTimeout(draw, 50);
  };
  /** Prints a permanent line above the live block. */
  const permanent = (line: string) => {
    erase();
    out.write(`${clip(line)}\n`);
    schedule();
  };

  return {
    onEvent(e) {
      let state = images.get(e.image);
      if (!state) {
        state = { lines: [], logs: [], layers: new Map() };
        images.set(e.image, state);
      }
      switch (e.type) {
        case "build.step":
          state.step = describeStep(e);
          state.logs = [];
          break;
        case "build.log":
          state.logs.push(e.line);
          if (state.logs.length > 20) state.logs.splice(0, state.logs.length - 20);
          break;
        case "push.progress":
          state.layers.set(e.layer, { status: e.status, current: e.current, total: e.total });
          break;
        case "done":
        case "error":
          state.finished = describeEvent(e);
          permanent(`${e.type === "done" ? "✔" : "✖"} ${e.image}: ${state.finished}`);
          return;
        default: {
          const text = describeEvent(e);
          if (text) state.lines.push(text);
        }
      }
      schedule();
    },
    close() {
      if (timer) clearTimeout(timer);
      draw();
      closed = true;
    },
  };
}
