/**
 * Secret redaction when BuildKit cuts a step's log anywhere: inside a multi-byte UTF-8 character of a
 * non-ASCII secret, inside the secret, between stdout and stderr of the same step, or never ending a
 * line at all. The secret never appears (nor any piece of it), no U+FFFD appears, and the line reads
 * as printed with the secret as `***`. Built from BuildKit's own message shapes (protobuf
 * StatusResponse in `moby.buildkit.trace` aux messages) and the classic builder's JSON messages, with
 * the redactor builds use (`secretRedactor` of @kiln/core).
 */
import { Readable } from "node:stream";
import { secretRedactor, type BuildEvent } from "@kiln/core";
import { describe, expect, it } from "vitest";
import { followBuild } from "../src/build/buildProgress.js";
import { LogLineAssembler } from "../src/build/logLines.js";
import { lengthDelimitedField, varintField } from "../src/session/protobuf.js";

/** Non-ASCII in 2-, 3- and 4-byte UTF-8 sequences. */
const SECRET = "pässwörd-€uro-密码-🔑-geheim";
const redact = secretRedactor([SECRET]);
const LINE = `token=${SECRET} done`;
const bytes = Buffer.from(`${LINE}\n`);

/** Byte offsets that fall inside a multi-byte character of the secret. */
const insideCharacters = [...bytes.keys()].filter((i) => i > 0 && (bytes[i]! & 0xc0) === 0x80);

/** Every piece of the secret of 4+ characters: none may be shown. */
const pieces = (() => {
  const chars = [...SECRET];
  const out: string[] = [];
  for (let i = 0; i + 4 <= chars.length; i++) out.push(chars.slice(i, i + 4).join(""));
  return out;
})();

function expectClean(text: string): void {
  expect(text).not.toContain("\uFFFD");
  for (const piece of pieces) expect(text).not.toContain(piece);
}

// ---- BuildKit trace messages -----------------------------------------------------------------

const VERTEX = "sha256:0123456789abcdef";
const STEP = "[stage-0 2/2] RUN print-the-secret";

function timestamp(ms: number): Buffer {
  return Buffer.concat([varintField(1, Math.floor(ms / 1000)), varintField(2, (ms % 1000) * 1e6)]);
}
function vertexMessage(options: { started?: boolean; completed?: boolean; digest?: string; name?: string }): Buffer {
  return lengthDelimitedField(
    1,
    Buffer.concat([
      lengthDelimitedField(1, options.digest ?? VERTEX),
      lengthDelimitedField(3, options.name ?? STEP),
      ...(options.started ? [lengthDelimitedField(5, timestamp(Date.UTC(2024, 0, 1)))] : []),
      ...(options.completed ? [lengthDelimitedField(6, timestamp(Date.UTC(2024, 0, 1, 0, 1)))] : []),
    ]),
  );
}
function logMessage(data: Buffer, stream = 1, vertex = VERTEX): Buffer {
  return lengthDelimitedField(3, Buffer.concat([lengthDelimitedField(1, vertex), varintField(3, stream), lengthDelimitedField(4, data)]));
}
const trace = (...parts: Buffer[]) => `${JSON.stringify({ id: "moby.buildkit.trace", aux: Buffer.concat(parts).toString("base64") })}\n`;
const imageId = `${JSON.stringify({ aux: { ID: "sha256:feedface" } })}\n`;

async function follow(messages: string[]): Promise<BuildEvent[]> {
  const events: BuildEvent[] = [];
  await followBuild(Readable.from(messages.map((m) => Buffer.from(m))), { image: "example:1", redact, onEvent: (e) => events.push(e) });
  return events;
}
const logLines = (events: BuildEvent[]) => events.filter((e) => e.type === "build.log").map((e) => (e as { line: string }).line);

describe("BuildKit logs cut inside a multi-byte character of a non-ASCII secret", () => {
  it.each(insideCharacters.map((at) => [at]))("cut at byte %i: the line reads token=*** done, no U+FFFD, no piece of the secret", async (at) => {
    const events = await follow([
      trace(vertexMessage({ started: true })),
      trace(logMessage(bytes.subarray(0, at))),
      trace(logMessage(bytes.subarray(at))),
      trace(vertexMessage({ started: true, completed: true })),
      imageId,
    ]);
    expect(logLines(events)).toEqual(["token=*** done"]);
    expectClean(JSON.stringify(events));
  });

  it("one byte per chunk, with no newline before the step ends", async () => {
    const noNewline = Buffer.from(LINE);
    const events = await follow([
      trace(vertexMessage({ started: true })),
      ...[...noNewline.keys()].map((i) => trace(logMessage(noNewline.subarray(i, i + 1)))),
      trace(vertexMessage({ started: true, completed: true })),
      imageId,
    ]);
    expect(logLines(events)).toEqual(["token=*** done"]);
    expectClean(JSON.stringify(events));
  });

  it("stdout and stderr of one step interleaved: each stream is its own line", async () => {
    const out = Buffer.from(`out ${SECRET}\n`);
    const err = Buffer.from(`err ${SECRET}\n`);
    const events = await follow([
      trace(vertexMessage({ started: true })),
      trace(logMessage(out.subarray(0, 7), 1)),
      trace(logMessage(err.subarray(0, 9), 2)),
      trace(logMessage(out.subarray(7), 1)),
      trace(logMessage(err.subarray(9), 2)),
      trace(vertexMessage({ started: true, completed: true })),
      imageId,
    ]);
    expect(logLines(events).sort()).toEqual(["err ***", "out ***"]);
    expectClean(JSON.stringify(events));
  });

  it("a step's unfinished line is released when the step completes, under that step", async () => {
    const events = await follow([
      trace(vertexMessage({ started: true })),
      trace(logMessage(Buffer.from(`last ${SECRET}`))),
      trace(vertexMessage({ started: true, completed: true })),
      trace(vertexMessage({ digest: "sha256:second", name: "[stage-0 3/3] RUN next", started: true })),
      trace(logMessage(Buffer.from("next line\n"), 1, "sha256:second")),
      imageId,
    ]);
    const logs = events.filter((e) => e.type === "build.log") as Array<{ step?: string; line: string }>;
    expect(logs.map((e) => [e.step, e.line])).toEqual([
      [STEP, "last ***"],
      ["[stage-0 3/3] RUN next", "next line"],
    ]);
  });

  it("a failing step's log tail in BuildFailedError is redacted whole too", async () => {
    const at = insideCharacters[3]!;
    const error = await followBuild(
      Readable.from(
        [
          trace(vertexMessage({ started: true })),
          trace(logMessage(bytes.subarray(0, at))),
          trace(logMessage(bytes.subarray(at))),
          `${JSON.stringify({ errorDetail: { message: "exit code: 1" } })}\n`,
        ].map((m) => Buffer.from(m)),
      ),
      { image: "example:1", redact },
    ).catch((e: unknown) => e);
    expect(String(error)).toContain("token=*** done");
    expectClean(JSON.stringify(error) + String(error));
  });
});

describe("LogLineAssembler", () => {
  it("a line that never ends is released in pieces, never cutting the secret, the secret at every offset", () => {
    for (let offset = 0; offset < 90; offset++) {
      const lines = new LogLineAssembler({ redact, maxPending: 64, keep: 40 });
      const text = `${"x".repeat(offset)}${SECRET}${"y".repeat(150)}`;
      const released: string[] = [];
      const data = Buffer.from(text);
      for (let i = 0; i < data.length; i += 7) released.push(...lines.push(data.subarray(i, i + 7)));
      released.push(...lines.end());
      expect(released.length, `offset ${offset}`).toBeGreaterThan(1);
      expect(released.join("")).toBe(text); // nothing lost, nothing added
      const shown = released.map(redact).join("\n");
      expectClean(shown);
      expect(shown).toContain("***");
    }
  });

  it("an unfinished character at the very end of the step is U+FFFD (and only then)", () => {
    const lines = new LogLineAssembler();
    expect(lines.push(Buffer.from([0x61, 0xc3]))).toEqual([]);
    expect(lines.end()).toEqual(["a\uFFFD"]);
  });
});

describe("classic builder messages (already text: the daemon sends output as it was written)", () => {
  const stream = (text: string) => `${JSON.stringify({ stream: text })}\n`;

  it("a secret cut between two messages is redacted as one line; the daemon's own lines stay lines", async () => {
    const cut = SECRET.indexOf("wörd");
    const events = await follow([
      stream("Step 1/1 : RUN print-the-secret"),
      stream("\n"),
      stream(" ---> Running in 0123456789ab\n"),
      stream(`token=${SECRET.slice(0, cut)}`),
      stream(`${SECRET.slice(cut)} done\n`),
      stream("unfinished"),
      stream(" ---> 0123456789ab\n"),
      imageId,
    ]);
    expect(events.filter((e) => e.type === "build.step").map((e) => (e as { step: string }).step)).toEqual(["RUN print-the-secret"]);
    expect(logLines(events)).toEqual(["token=*** done", "unfinished"]);
    expectClean(JSON.stringify(events));
  });
});
