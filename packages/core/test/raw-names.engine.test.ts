/**
 * Issue 12 item 2 against the real engine: names that are not UTF-8, and .dockerignore patterns over
 * them (`?`, `*`, a pattern written with the raw bytes, a pruned directory), give exactly the files
 * `docker build` (the docker CLI's own walk and matcher) puts in the image — byte for byte — and Kiln's
 * own tar stream delivers the same files to the same engine.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBuildContext } from "../src/context.js";
import type { ImageSpec } from "../src/layers.js";
import { decodeName } from "../src/rawNames.js";
import { listSpecFiles } from "../src/walk.js";

/** `docker …` with the classic builder (the CLI applies .dockerignore itself); stdout as bytes. */
const run = (args: string[], stdin?: Readable): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const child = spawn("docker", args, { env: { ...process.env, DOCKER_BUILDKIT: "0" }, stdio: [stdin ? "pipe" : "ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let err = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.stdout!.on("data", (c: Buffer) => out.push(c));
    child.stderr!.on("data", (c: Buffer) => (err += c.toString()));
    if (stdin) {
      stdin.on("error", reject);
      stdin.pipe(child.stdin!);
    }
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(Buffer.concat(out));
      else reject(new Error(`docker ${args.join(" ")} exited ${code}: ${err}`));
    });
  });

const id = randomBytes(4).toString("hex");
const BUSYBOX = `kiln-test-raw/busybox:${id}`;
const FROM_CLI = `kiln-test-raw/ctx-cli:${id}`;
const FROM_STREAM = `kiln-test-raw/ctx-stream:${id}`;
let root: string;
let ctxDir: string;

/** Names as bytes: a latin1 string is one byte per char; `u` marks UTF-8 text. */
const L = (s: string) => Buffer.from(s, "latin1");
const U = (s: string) => Buffer.from(s, "utf8");
const FILES: Buffer[] = [
  L("conf\xe9.ini"),
  L("skip\xe9.txt"),
  L("skip\xe9\xe9.txt"),
  U("skipé.txt"),
  L("star\xe9\xff.txt"),
  L("lit\xe9.txt"),
  U("lité.txt"),
  L("d\xe9/inner\xff.txt"),
  L("d\xe9/drop.log"),
  L("x\xe9dir/keep.txt"),
  L("x\xe9dir/other.txt"),
  L("plain.txt"),
];
const DOCKERIGNORE = L(["skip?.txt", "star*.txt", "lit\xe9.txt", "**/*.log", "x?dir", "!x?dir/keep.txt", ""].join("\n"));

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "kiln-raw-engine-"));
  process.env.KILN_HASH_CACHE = "off";
  const base = join(root, "base");
  mkdirSync(base);
  copyFileSync("/bin/busybox", join(base, "busybox"));
  writeFileSync(join(base, "Dockerfile"), 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n');
  await run(["build", "-q", "-t", BUSYBOX, base]);

  ctxDir = join(root, "ctx");
  mkdirSync(ctxDir);
  for (const file of FILES) {
    const path = Buffer.concat([U(`${ctxDir}/`), file]);
    const slash = file.lastIndexOf(0x2f);
    if (slash !== -1) mkdirSync(Buffer.concat([U(`${ctxDir}/`), file.subarray(0, slash)]), { recursive: true });
    writeFileSync(path, Buffer.concat([U("content of "), file]));
  }
  symlinkSync(L("conf\xe9.ini"), join(ctxDir, "ln"));
  writeFileSync(join(ctxDir, ".dockerignore"), DOCKERIGNORE);
  writeFileSync(
    join(ctxDir, "Dockerfile"),
    [`FROM ${BUSYBOX}`, "COPY . /ctx", `RUN cd /ctx && for t in f d l; do find . -mindepth 1 -type $t | sed "s|^\\./|$t |"; done > /listing.txt`, ""].join(
      "\n",
    ),
  );
}, 180_000);

afterAll(async () => {
  await run(["rmi", "-f", FROM_CLI, FROM_STREAM, BUSYBOX]).catch(() => undefined);
  rmSync(root, { recursive: true, force: true });
});

/** The image's listing, each line decoded the way Kiln carries names (raw bytes escaped). */
async function listingOf(image: string): Promise<string[]> {
  const out = await run(["run", "--rm", image, "cat", "/listing.txt"]);
  const lines: string[] = [];
  let start = 0;
  for (let i = 0; i < out.length; i++) {
    if (out[i] !== 0x0a) continue;
    if (i > start) lines.push(decodeName(out.subarray(start, i)));
    start = i + 1;
  }
  return lines.sort();
}

const spec = (): ImageSpec => ({
  base: { kind: "dockerfile", dockerfileHostPath: join(ctxDir, "Dockerfile"), contextHostPath: ctxDir, buildArgs: [] },
  layers: [],
  name: "ctx",
  platform: ["linux/amd64"],
  installer: "pip",
  uvImage: "unused",
  extendable: false,
});

function expectedFromWalk(): string[] {
  const group = listSpecFiles(spec()).groups.find((g) => g.layerIndex === -1)!;
  const lines = new Set<string>();
  for (const entry of group.entries) {
    lines.add(`${entry.type === "file" ? "f" : entry.type === "dir" ? "d" : "l"} ${entry.path}`);
    const parts = entry.path.split("/");
    for (let n = 1; n < parts.length; n++) lines.add(`d ${parts.slice(0, n).join("/")}`);
  }
  return [...lines].sort();
}

const line = (type: string, bytes: Buffer) => `${type} ${decodeName(bytes)}`;

describe("names that are not UTF-8 against the real engine (classic builder)", () => {
  it("walk.ts keeps and drops exactly the files `docker build` keeps and drops", async () => {
    await run(["build", "-q", "-t", FROM_CLI, ctxDir]);
    const fromDocker = await listingOf(FROM_CLI);
    expect(expectedFromWalk()).toEqual(fromDocker);
    // Docker's own answer: raw names kept byte-exact; `?` is one invalid byte; `*` a run; raw literal pattern.
    expect(fromDocker).toEqual(
      expect.arrayContaining([
        line("f", L("conf\xe9.ini")),
        line("f", L("skip\xe9\xe9.txt")),
        line("f", U("lité.txt")),
        line("f", L("d\xe9/inner\xff.txt")),
        line("l", U("ln")),
      ]),
    );
    for (const gone of [
      L("skip\xe9.txt"),
      U("skipé.txt"),
      L("star\xe9\xff.txt"),
      L("lit\xe9.txt"),
      L("d\xe9/drop.log"),
      L("x\xe9dir/keep.txt"),
      L("x\xe9dir/other.txt"),
    ]) {
      expect(fromDocker).not.toContain(line("f", gone));
    }
  });

  it("Kiln's tar carries the raw names to the engine: the same files, byte-exact, with their content", async () => {
    const context = createBuildContext(spec(), { dockerfile: readFileSync(join(ctxDir, "Dockerfile"), "utf8") });
    await run(["build", "-q", "-t", FROM_STREAM, "-f", context.dockerfilePath, "-"], context.stream);
    expect(await listingOf(FROM_STREAM)).toEqual(expectedFromWalk());
    // (a glob in the image's shell: an argument here could not carry the raw bytes)
    const content = await run(["run", "--rm", FROM_STREAM, "sh", "-c", "cat /ctx/d*/inner*.txt"]);
    expect(content.equals(Buffer.concat([U("content of "), L("d\xe9/inner\xff.txt")]))).toBe(true);
  });
});
