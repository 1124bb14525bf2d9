/**
 * Issue 12 item 2 — no file is silently dropped: names that are not valid UTF-8 (a Latin-1
 * `conf\xe9.ini`) are listed, matched, hashed and sent byte-exact, as the docker CLI keeps them.
 * (Against the real engine: raw-names.engine.test.ts here, and @kiln/docker's raw-names integration test.)
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBuildContext } from "../src/context.js";
import { IgnoreMatcher, parseDockerignore } from "../src/dockerignore.js";
import { SourceChangedError, ValidationError } from "../src/errors.js";
import { computeTag, explainTag } from "../src/hash.js";
import type { ImageSpec } from "../src/layers.js";
import { decodeName, nameBytes } from "../src/rawNames.js";
import { snapshotSpec } from "../src/snapshot.js";
import { setSnapshotTestHooks } from "../src/snapshotHooks.js";
import { compareUtf8, walkDirectory } from "../src/walk.js";

let root: string;
let n = 0;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "kiln-raw-names-"));
  process.env.KILN_HASH_CACHE = "off";
});
afterAll(() => {
  setSnapshotTestHooks(undefined);
  rmSync(root, { recursive: true, force: true });
});

/** A path under `dir` whose last part is given as bytes (latin1 string: one char per byte). */
const raw = (dir: string, bytes: string) => Buffer.concat([Buffer.from(`${dir}/`), Buffer.from(bytes, "latin1")]);
/** The escaped string Kiln uses for those bytes. */
const esc = (bytes: string) => decodeName(Buffer.from(bytes, "latin1"));

function spec(dir: string): ImageSpec {
  return {
    base: { kind: "image", ref: "busybox:1.36" },
    layers: [{ kind: "sourceFolder", hostPath: dir, dest: "/app" }],
    name: "app",
    platform: ["linux/amd64"],
    installer: "pip",
    uvImage: "ghcr.io/astral-sh/uv:0.5.0",
    extendable: true,
  };
}

function dir(): string {
  const d = join(root, `d${n++}`);
  mkdirSync(d);
  return d;
}

/** The entry names of a tar, as raw bytes (read back by Python's tarfile, which keeps PAX bytes). */
async function tarNames(stream: Readable): Promise<Array<{ name: Buffer; type: string; link: Buffer }>> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  const script =
    "import os,sys,tarfile\nfor m in tarfile.open(fileobj=sys.stdin.buffer, mode='r|'):\n  print(os.fsencode(m.name).hex(), m.type.decode(), os.fsencode(m.linkname).hex())";
  const result = spawnSync("python3", ["-c", script], { input: Buffer.concat(chunks), timeout: 30_000 });
  expect(result.status, String(result.stderr)).toBe(0);
  return String(result.stdout)
    .trim()
    .split("\n")
    .map((line) => line.split(" "))
    .map(([name, type, link]) => ({ name: Buffer.from(name!, "hex"), type: type!, link: Buffer.from(link ?? "", "hex") }));
}

describe("names that are not UTF-8", () => {
  it("are listed byte-exact (files, directories, link targets), sorted by their bytes", () => {
    const d = dir();
    writeFileSync(raw(d, "conf\xe9.ini"), "x=1\n");
    writeFileSync(join(d, "confé.ini"), "x=1\n");
    mkdirSync(raw(d, "r\xffdir"));
    writeFileSync(Buffer.concat([raw(d, "r\xffdir"), Buffer.from("/in\xe0.txt", "latin1")]), "in\n");
    symlinkSync(Buffer.from("conf\xe9.ini", "latin1"), join(d, "ln"));
    const entries = walkDirectory(d, []);
    expect(entries.map((e) => [e.path, e.type])).toEqual([
      ["confé.ini", "file"], // C3 A9 sorts before E9
      [esc("conf\xe9.ini"), "file"],
      ["ln", "symlink"],
      [esc("r\xffdir"), "dir"],
      [`${esc("r\xffdir")}/${esc("in\xe0.txt")}`, "file"],
    ]);
    expect(entries.find((e) => e.path === "ln")!.linkTarget).toBe(esc("conf\xe9.ini"));
    expect(nameBytes(entries[1]!.path).equals(Buffer.from("conf\xe9.ini", "latin1"))).toBe(true);
    // Byte order throughout: a raw byte against ASCII, UTF-8 lead bytes and astral characters.
    const sorted = [esc("\xe9"), "é", "z", "\uE000", "😀", esc("\xf5"), esc("\x80")].sort(compareUtf8);
    expect(sorted.map((s) => nameBytes(s).toString("hex"))).toEqual(
      sorted
        .map((s) => nameBytes(s))
        .sort(Buffer.compare)
        .map((b) => b.toString("hex")),
    );
  });

  it("count in the tag: a Latin-1 name differs from its UTF-8 twin, and is never dropped", () => {
    const latin = dir();
    writeFileSync(raw(latin, "conf\xe9.ini"), "x=1\n");
    const utf8 = dir();
    writeFileSync(join(utf8, "confé.ini"), "x=1\n");
    const empty = dir();
    const tags = [computeTag(spec(latin), { cache: false }), computeTag(spec(utf8), { cache: false }), computeTag(spec(empty), { cache: false })];
    expect(new Set(tags).size).toBe(3);
    writeFileSync(raw(latin, "conf\xe9.ini"), "x=2\n");
    expect(computeTag(spec(latin), { cache: false })).not.toBe(tags[0]);
  });

  it("leave the tag of UTF-8 names exactly as it was (same recipe, same value as before this change)", () => {
    const d = dir();
    mkdirSync(join(d, "dïr"));
    writeFileSync(join(d, "confé.ini"), "x=1\n");
    writeFileSync(join(d, "dïr", "ü.txt"), "u\n");
    writeFileSync(join(d, "plain.txt"), "plain\n");
    writeFileSync(join(d, "\u{1F600}.txt"), "smile\n");
    writeFileSync(join(d, "\uE000.txt"), "pua\n");
    symlinkSync("confé.ini", join(d, "ln"));
    // Computed by Kiln before raw names were carried (kiln-tag-v3).
    expect(computeTag(spec(d), { cache: false })).toBe("c609a075138e6f69245886903cf22eea");
  });

  it("are shown escaped in the explanation and in errors", () => {
    const d = dir();
    writeFileSync(raw(d, "conf\xe9.ini"), "x=1\n");
    symlinkSync(Buffer.from("t\xff", "latin1"), join(d, "ln"));
    const inputs = explainTag(spec(d), { cache: false }).inputs;
    expect(inputs.find((i) => i.label === "layers[0] conf\\xe9.ini")?.value).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(inputs.find((i) => i.label === "layers[0] ln")?.value).toBe("symlink -> t\\xff");

    setSnapshotTestHooks({ afterListing: () => unlinkSync(raw(d, "conf\xe9.ini")) });
    let error: unknown;
    try {
      computeTag(spec(d), { cache: false });
    } catch (e) {
      error = e;
    } finally {
      setSnapshotTestHooks(undefined);
    }
    expect(SourceChangedError.isInstance(error)).toBe(true);
    expect((error as Error).message).toContain(`${d}/conf\\xe9.ini" changed after the sources were listed`);
  });

  it("are sent in the build context with their raw bytes (PAX path records) and their content", async () => {
    const d = dir();
    writeFileSync(raw(d, "conf\xe9.ini"), "x=1\n");
    mkdirSync(raw(d, "r\xffdir"));
    writeFileSync(Buffer.concat([raw(d, "r\xffdir"), Buffer.from("/in.txt")]), "in\n");
    symlinkSync(Buffer.from("conf\xe9.ini", "latin1"), join(d, "ln"));
    const { snapshot } = snapshotSpec(spec(d), { cache: false });
    const context = createBuildContext(spec(d), { dockerfile: "FROM x\n", snapshot });
    expect(context.files).toContain(`kiln-layers/0/${esc("conf\xe9.ini")}`);
    const names = await tarNames(context.stream);
    const hex = (s: string) => Buffer.from(s, "latin1").toString("hex");
    expect(names.map((e) => [e.name.toString("hex"), e.type, e.link.toString("hex")])).toEqual([
      [hex("kiln-layers"), "5", ""],
      [hex("Dockerfile"), "0", ""],
      [hex("kiln-layers/0"), "5", ""],
      [hex("kiln-layers/0/conf\xe9.ini"), "0", ""],
      [hex("kiln-layers/0/ln"), "2", hex("conf\xe9.ini")],
      [hex("kiln-layers/0/r\xffdir"), "5", ""],
      [hex("kiln-layers/0/r\xffdir/in.txt"), "0", ""],
    ]);
  });
});

describe(".dockerignore matching on names that are not UTF-8 (moby: bytes; Go's regexp: one U+FFFD per invalid byte)", () => {
  /** Raw bytes (one char per byte) and UTF-8 text, as the name bytes they stand for. */
  const bytes = (s: string) => Buffer.from(s, "latin1");
  const utf8 = (s: string) => Buffer.from(s, "utf8");
  const names = [
    bytes("skip\xe9.txt"),
    bytes("skip\xe9\xe9.txt"),
    utf8("skipé.txt"),
    bytes("star\xe9\xff.txt"),
    bytes("lit\xe9.txt"),
    utf8("lité.txt"),
    utf8("keep.txt"),
  ];
  const excluded = (patterns: string[]) => {
    const matcher = new IgnoreMatcher(patterns);
    return names.filter((name) => matcher.matches(decodeName(name))).map((name) => name.toString("hex"));
  };
  const hex = (...list: Buffer[]) => list.map((b) => b.toString("hex"));

  it("`?` matches exactly one invalid byte (or one UTF-8 character); `*` any run of them", () => {
    expect(excluded(["skip?.txt"])).toEqual(hex(bytes("skip\xe9.txt"), utf8("skipé.txt")));
    expect(excluded(["star*.txt"])).toEqual(hex(bytes("star\xe9\xff.txt")));
    expect(excluded(["skip*"])).toEqual(hex(bytes("skip\xe9.txt"), bytes("skip\xe9\xe9.txt"), utf8("skipé.txt")));
    expect(excluded(["skip??.txt"])).toEqual(hex(bytes("skip\xe9\xe9.txt")));
  });

  it("a pattern written with the raw bytes in the .dockerignore matches that name only", () => {
    expect(excluded(parseDockerignore(decodeName(bytes("lit\xe9.txt\n"))))).toEqual(hex(bytes("lit\xe9.txt")));
    expect(excluded(["lité.txt"])).toEqual(hex(utf8("lité.txt")));
  });

  it("a wildcard pattern that is not UTF-8 fails, as Docker's does, instead of matching nothing", () => {
    expect(() => new IgnoreMatcher(parseDockerignore(decodeName(bytes("lit\xe9*\n"))))).toThrow(ValidationError);
  });
});
