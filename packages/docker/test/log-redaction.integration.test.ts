/**
 * Redaction of step output cut into pieces by real builds (separate writes with a pause between each,
 * so the daemon sends them as separate chunks or messages):
 * - BuildKit: a RUN step prints a non-ASCII build secret cut inside its multi-byte characters; the
 *   value appears in no event, nor does any piece of it or a U+FFFD, and the line reads `token=*** done`.
 * - Classic builder: a step prints a URL with credentials in two messages; the joined line is redacted.
 */
import { createHash } from "node:crypto";
import { Image, type BuildEvent } from "@kiln/core";
import { DockerCleanup, ensureBusyboxImage, uniqueName } from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DockerImageBuilder } from "../src/builder.js";

const cleanup = new DockerCleanup();
let busybox: string;
/** 2-, 3- and 4-byte UTF-8 characters, with a unique ASCII tail. */
const PREFIX = "pässwörd-€uro-密码-🔑-";
const VALUE = `${PREFIX}${Date.now()}`;
const sha = (v: string) => createHash("sha256").update(v).digest("hex");

beforeAll(async () => {
  busybox = await ensureBusyboxImage();
});
afterAll(async () => {
  await cleanup.run();
});

/** Byte offsets of the secret file that fall inside a character: after the first byte of ä, €, 密 and 🔑. */
function cutsInsideCharacters(): number[] {
  const cuts: number[] = [];
  let offset = 0;
  for (const char of VALUE) {
    const length = Buffer.byteLength(char);
    if (length > 1 && "ä€密🔑".includes(char)) cuts.push(offset + 1);
    offset += length;
  }
  return cuts;
}

describe("step output printed in pieces", () => {
  it("is redacted whole in every event: no value, no piece of it, no U+FFFD", async () => {
    const cuts = cutsInsideCharacters();
    expect(cuts).toHaveLength(4);
    const total = Buffer.byteLength(VALUE);
    const bounds = [0, ...cuts, total];
    const pieces = bounds.slice(0, -1).map((start, i) => `dd if=/run/secrets/TOKEN bs=1 skip=${start} count=${bounds[i + 1]! - start} 2>/dev/null`);
    const script = [
      `test "$(sha256sum < /run/secrets/TOKEN | cut -d' ' -f1)" = "${sha(VALUE)}"`,
      `printf 'token='; ${pieces.join("; sleep 1; ")}; printf ' done\\n'`,
    ].join(" && ");
    const image = Image.fromBase(busybox, { name: uniqueName("kiln-bsec-nonascii") }).withCommands(script, { secrets: ["TOKEN"] });
    cleanup.image(image.uri);
    const events: BuildEvent[] = [];
    const result = await new DockerImageBuilder({ buildkit: true }).buildImage(image, { secrets: { TOKEN: VALUE }, onEvent: (e) => events.push(e) });
    expect(result.uri).toBe(image.uri);

    const lines = events.filter((e) => e.type === "build.log").map((e) => (e as { line: string }).line);
    expect(lines, JSON.stringify(lines)).toContain("token=*** done");
    const transcript = JSON.stringify(events);
    expect(transcript).not.toContain("\uFFFD");
    expect(transcript).not.toContain("\\ufffd");
    expect(transcript).not.toContain(VALUE);
    const chars = [...PREFIX]; // (the numeric tail's pieces could match a timestamp)
    for (let i = 0; i + 3 <= chars.length; i++) expect(transcript).not.toContain(chars.slice(i, i + 3).join(""));
  });

  it("classic builder: a URL with credentials printed in two messages is redacted as one line", async () => {
    const password = `Pw${Date.now()}x`;
    const image = Image.fromBase(busybox, { name: uniqueName("kiln-classic-split") }).withCommands(
      `printf 'fetching https://deploy:${password.slice(0, 5)}'; sleep 1; printf '${password.slice(5)}@artifacts.example/x ok\\n'`,
    );
    cleanup.image(image.uri);
    const events: BuildEvent[] = [];
    const result = await new DockerImageBuilder({ buildkit: false }).buildImage(image, { onEvent: (e) => events.push(e) });
    expect(result.uri).toBe(image.uri);
    const lines = events.filter((e) => e.type === "build.log").map((e) => (e as { line: string }).line);
    expect(lines, JSON.stringify(lines)).toContain("fetching https://***@artifacts.example/x ok");
    // (Log lines only: the step's name is the command, which holds both halves as written.)
    const transcript = JSON.stringify(lines);
    expect(transcript).not.toContain(password.slice(0, 5));
    expect(transcript).not.toContain(password.slice(5));
  });
});
