/**
 * The Engine streams build and push progress as JSON messages, one per line, inside an HTTP 200
 * response — including errors. This reads EVERY message (a truncated last line included), so an
 * error at the end of the stream is never missed.
 */
import { StringDecoder } from "node:string_decoder";

/** One message of a build or push stream (the fields the Engine uses). */
export interface EngineMessage {
  stream?: string;
  status?: string;
  id?: string;
  progress?: string;
  progressDetail?: { current?: number; total?: number };
  error?: string;
  errorDetail?: { code?: number; message?: string };
  aux?: unknown;
}

export async function* readJsonMessages(stream: AsyncIterable<Buffer | string>): AsyncGenerator<EngineMessage> {
  const decoder = new StringDecoder("utf8");
  let pending = "";
  for await (const chunk of stream) {
    pending += typeof chunk === "string" ? chunk : decoder.write(chunk);
    let newline: number;
    while ((newline = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, newline).trim();
      pending = pending.slice(newline + 1);
      if (line) yield parseLine(line);
    }
  }
  const rest = (pending + decoder.end()).trim();
  if (rest) yield parseLine(rest);
}

function parseLine(line: string): EngineMessage {
  try {
    const parsed = JSON.parse(line) as unknown;
    return typeof parsed === "object" && parsed !== null ? (parsed as EngineMessage) : { stream: line };
  } catch {
    // Not JSON (a proxy's error page, say): keep it as text so it still shows in the log tail.
    return { stream: line };
  }
}
