/**
 * One step's log, reassembled into whole lines before anything is redacted or shown.
 *
 * BuildKit sends a step's output as chunks of raw bytes cut wherever its reads happened to end: inside
 * a multi-byte UTF-8 character, inside a line, inside a secret. Decoding each chunk on its own turns a
 * cut character into U+FFFD (so a non-ASCII secret no longer matches, and its pieces are shown), and
 * redacting each piece on its own misses a secret cut in two. So each step (and stream) gets its own
 * streaming decoder, and text is only released as whole lines: a partial line waits for its newline
 * or the end of the step.
 *
 * A line that never ends is released once it passes `maxPending` characters, cut where the redactor
 * shows no secret across the cut (it redacts the two pieces exactly as it redacts their join), and the
 * last `keep` characters stay pending so a secret that starts near the cut is still seen whole with
 * what follows. (Only a single secret line longer than `keep` could still be cut.)
 */

/** Characters a partial line may hold before part of it is released. */
export const MAX_PENDING_LINE = 64 * 1024;
/** Characters kept back when a long partial line is released. */
export const KEEP_PENDING_TAIL = 16 * 1024;

export interface LogLineOptions {
  /** The redactor the lines go through next; used only to choose where a too-long line is cut. */
  redact?: (text: string) => string;
  maxPending?: number;
  keep?: number;
}

export class LogLineAssembler {
  private readonly decoder = new TextDecoder("utf-8");
  private pending = "";
  private readonly redact: (text: string) => string;
  private readonly maxPending: number;
  private readonly keep: number;

  constructor(options: LogLineOptions = {}) {
    this.redact = options.redact ?? ((text) => text);
    this.maxPending = options.maxPending ?? MAX_PENDING_LINE;
    this.keep = Math.min(options.keep ?? KEEP_PENDING_TAIL, Math.floor(this.maxPending / 2));
  }

  /** The lines this chunk completes (without their `\n`, a trailing `\r` removed). Not yet redacted. */
  push(chunk: Uint8Array | string): string[] {
    this.pending += typeof chunk === "string" ? chunk : this.decoder.decode(chunk, { stream: true });
    return this.takeLines();
  }

  /** Whatever is left at the end of the step (an unfinished character becomes U+FFFD, as it must). */
  end(): string[] {
    const rest = this.pending + this.decoder.decode();
    this.pending = "";
    return rest === "" ? [] : [stripCR(rest)];
  }

  /** True when nothing is buffered. */
  get empty(): boolean {
    return this.pending === "";
  }

  private takeLines(): string[] {
    const lines: string[] = [];
    let newline = this.pending.indexOf("\n");
    if (newline >= 0) {
      let from = 0;
      while (newline >= 0) {
        lines.push(stripCR(this.pending.slice(from, newline)));
        from = newline + 1;
        newline = this.pending.indexOf("\n", from);
      }
      this.pending = this.pending.slice(from);
    }
    while (this.pending.length > this.maxPending) lines.push(this.releaseLongLine());
    return lines;
  }

  /** Cuts the front off a too-long partial line (looking at its first `maxPending` characters only, so
   * a huge chunk costs linear time) where no secret crosses the cut. */
  private releaseLongLine(): string {
    const window = this.pending.slice(0, this.maxPending);
    const whole = this.redact(window);
    let cut = safeCut(window, window.length - this.keep);
    for (let step = 1024; cut > 0; cut = safeCut(window, cut - step), step *= 2) {
      if (this.redact(window.slice(0, cut)) + this.redact(window.slice(cut)) === whole) break;
    }
    if (cut <= 0) cut = window.length; // no clean cut: release the window, redacted as one piece
    this.pending = this.pending.slice(cut);
    return window.slice(0, cut);
  }
}

function stripCR(line: string): string {
  return line.endsWith("\r") ? line.slice(0, -1) : line;
}

/** `at`, moved back off the second half of a surrogate pair. */
function safeCut(text: string, at: number): number {
  const code = text.charCodeAt(at);
  return at > 0 && code >= 0xdc00 && code <= 0xdfff ? at - 1 : at;
}
