/**
 * The context's own tar headers (tarHeader.ts) are the bytes tar-stream wrote for every name it can
 * carry — so no existing context changes — and names that are not UTF-8 keep their raw bytes.
 */
import tar from "tar-stream";
import { describe, expect, it } from "vitest";
import { encodeHeader, padding, type TarHeader } from "../src/tarHeader.js";

/** What tar-stream 3 writes before an entry's body (the whole header, PAX records included). */
async function tarStreamHeader(header: TarHeader): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on("data", (c: unknown) => chunks.push(c as Buffer));
  const ended = new Promise<void>((resolve) => pack.on("end", () => resolve()));
  const h = { ...header, mtime: new Date(0), uid: 0, gid: 0, uname: "", gname: "" };
  if (header.type === "file") {
    const size = header.size ?? 0;
    // Big sizes: only the header matters; an empty-bodied twin gives the same bytes but the size field.
    pack.entry({ ...h, size }, Buffer.alloc(size));
  } else pack.entry(h);
  pack.finalize();
  await ended;
  const all = Buffer.concat(chunks);
  const size = header.type === "file" ? (header.size ?? 0) : 0;
  return all.subarray(0, all.length - 1024 - size - padding(size).length);
}

const cases: TarHeader[] = [
  { name: "Dockerfile", type: "file", mode: 0o644, size: 17 },
  { name: "kiln-layers", type: "directory", mode: 0o755 },
  { name: "kiln-layers/0/run.sh", type: "file", mode: 0o755, size: 0 },
  { name: "kiln-layers/0/escape", type: "symlink", mode: 0o777, linkname: "../../../etc/passwd" },
  { name: "kiln-layers/0/empty-link", type: "symlink", mode: 0o777, linkname: "" },
  { name: "kiln-layers/0/confé.ini", type: "file", mode: 0o644, size: 3 },
  { name: "kiln-layers/0/😀/dir", type: "directory", mode: 0o755 },
  { name: `kiln-layers/0/${"d".repeat(90)}/${"f".repeat(90)}.txt`, type: "file", mode: 0o644, size: 513 },
  { name: `kiln-layers/0/${"n".repeat(120)}.txt`, type: "file", mode: 0o644, size: 1 },
  { name: `kiln-layers/0/${"p/".repeat(150)}x`, type: "file", mode: 0o644, size: 2 },
  { name: "kiln-layers/0/long-link", type: "symlink", mode: 0o777, linkname: `../${"t".repeat(120)}` },
  { name: "kiln-layers/0/utf8-link", type: "symlink", mode: 0o777, linkname: "cible-é" },
  { name: `kiln-layers/0/${"q".repeat(110)}`, type: "symlink", mode: 0o777, linkname: "short" },
];

describe("encodeHeader", () => {
  it.each(cases.map((c) => [c.name.slice(0, 40), c] as const))("writes tar-stream's bytes for %s", async (_, header) => {
    expect(encodeHeader(header).equals(await tarStreamHeader(header))).toBe(true);
  });

  it("writes a name that is not UTF-8 with its raw bytes in a PAX path record", () => {
    const block = encodeHeader({ name: "kiln-layers/0/conf\udce9.ini", type: "file", mode: 0o644, size: 3 });
    const records = block.subarray(512, 512 + Number.parseInt(block.subarray(124, 135).toString("latin1"), 8));
    expect(records.equals(Buffer.concat([Buffer.from("32 path=kiln-layers/0/conf", "latin1"), Buffer.from([0xe9]), Buffer.from(".ini\n")]))).toBe(true);
    expect(block[156]).toBe(0x78); // 'x': a PAX header
  });
});
