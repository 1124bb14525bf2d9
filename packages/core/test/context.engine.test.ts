/**
 * Proves the ignore semantics against the real engine: the docker CLI's classic builder applies
 * .dockerignore itself, so what `COPY . /ctx` receives is Docker's answer; walk.ts must list exactly
 * that. Then our own tar stream is fed to the same engine to show it is a valid, complete context.
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
import { listSpecFiles } from "../src/walk.js";

const run = (args: string[], stdin?: Readable): Promise<string> =>
  new Promise((resolve, reject) => {
    const child = spawn("docker", args, { env: { ...process.env, DOCKER_BUILDKIT: "0" }, stdio: [stdin ? "pipe" : "ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr!.on("data", (c: Buffer) => (err += c.toString()));
    if (stdin) {
      stdin.on("error", reject);
      stdin.pipe(child.stdin!);
    }
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`docker ${args.join(" ")} exited ${code}: ${err}${out}`))));
  });

const id = randomBytes(4).toString("hex");
const BUSYBOX = `kiln-test-b/busybox:${id}`;
const FROM_CLI = `kiln-test-b/ctx-cli:${id}`;
const FROM_STREAM = `kiln-test-b/ctx-stream:${id}`;
let root: string;
let ctxDir: string;

const DOCKERIGNORE = [
  "# comment line",
  "**/*.log",
  "!important.log",
  "build",
  "!build/keep.txt",
  "cache",
  "!**/keep.txt",
  "/docs/*.md",
  "!docs/README.md",
  "*/temp",
  "node_modules",
  "vendor/**",
  "!vendor/lib",
  "Secret.txt",
  "a+b",
  "./rooted/only  ",
  "",
].join("\n");

const FILES = [
  "important.log",
  "debug.log",
  "sub/x.log",
  "sub/deep/y.log",
  "sub/ok.txt",
  "build/keep.txt",
  "build/drop.txt",
  "build/sub/keep.txt",
  "cache/keep.txt",
  "keep.txt",
  "deep/er/keep.txt",
  "docs/a.md",
  "docs/README.md",
  "docs/sub/b.md",
  "src/temp/t",
  "src/main.py",
  "temp/t2",
  "node_modules/m/index.js",
  "pkg/node_modules/n.js",
  "vendor/lib/a.js",
  "vendor/other/b.js",
  "secret.txt",
  "Secret.txt",
  "a+b",
  "aab",
  "rooted/only",
  "x/rooted/only",
];

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "kiln-engine-ctx-"));
  process.env.KILN_HASH_CACHE = "off";
  // A busybox base made here: FROM scratch + Debian's static busybox.
  const base = join(root, "base");
  mkdirSync(base);
  copyFileSync("/bin/busybox", join(base, "busybox"));
  writeFileSync(join(base, "Dockerfile"), 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n');
  await run(["build", "-q", "-t", BUSYBOX, base]);

  ctxDir = join(root, "ctx");
  for (const file of FILES) {
    mkdirSync(join(ctxDir, file, ".."), { recursive: true });
    writeFileSync(join(ctxDir, file), file);
  }
  mkdirSync(join(ctxDir, "emptydir"));
  symlinkSync("src/main.py", join(ctxDir, "link"));
  writeFileSync(join(ctxDir, ".dockerignore"), DOCKERIGNORE);
  writeFileSync(join(ctxDir, "Dockerfile"), dockerfileText());
});

afterAll(async () => {
  await run(["rmi", "-f", FROM_CLI, FROM_STREAM, BUSYBOX]).catch(() => undefined);
  rmSync(root, { recursive: true, force: true });
});

function dockerfileText(): string {
  return [
    `FROM ${BUSYBOX}`,
    "COPY . /ctx",
    // One line per entry: type letter and path relative to /ctx.
    `RUN cd /ctx && for t in f d l; do find . -mindepth 1 -type $t | sed "s|^\\./|$t |"; done > /listing.txt`,
    "",
  ].join("\n");
}

async function listingOf(image: string): Promise<string[]> {
  const out = await run(["run", "--rm", image, "cat", "/listing.txt"]);
  return out.split("\n").filter(Boolean).sort();
}

/** What our walk says /ctx should contain: every entry, plus parent directories that extraction
 * creates implicitly for a re-included file inside an excluded directory. */
function expectedFromWalk(spec: ImageSpec): string[] {
  const group = listSpecFiles(spec).groups.find((g) => g.layerIndex === -1)!;
  const lines = new Set<string>();
  for (const entry of group.entries) {
    lines.add(`${entry.type === "file" ? "f" : entry.type === "dir" ? "d" : "l"} ${entry.path}`);
    const parts = entry.path.split("/");
    for (let n = 1; n < parts.length; n++) lines.add(`d ${parts.slice(0, n).join("/")}`);
  }
  return [...lines].sort();
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

describe("build context against the real engine (classic builder)", () => {
  it("walk.ts lists exactly what `docker build` sends for a tricky .dockerignore", async () => {
    await run(["build", "-q", "-t", FROM_CLI, ctxDir]);
    const fromDocker = await listingOf(FROM_CLI);
    const ours = expectedFromWalk(spec());
    expect(ours).toEqual(fromDocker);
    // Spot checks of the rules at play, from Docker's own answer.
    expect(fromDocker).toEqual(
      expect.arrayContaining([
        "f important.log",
        "f build/keep.txt",
        "f docs/README.md",
        "f secret.txt",
        "f aab",
        "f x/rooted/only",
        "l link",
        "d emptydir",
        "f vendor/lib/a.js",
        "f temp/t2",
        "f pkg/node_modules/n.js",
      ]),
    );
    for (const gone of [
      "f debug.log",
      "f sub/x.log",
      "f build/drop.txt",
      "f build/sub/keep.txt",
      "f cache/keep.txt",
      "f docs/a.md",
      "f src/temp/t",
      "f node_modules/m/index.js",
      "f vendor/other/b.js",
      "f Secret.txt",
      "f a+b",
      "f rooted/only",
    ]) {
      expect(fromDocker).not.toContain(gone);
    }
    // !**/keep.txt re-includes keep.txt anywhere Docker still walks, but not inside the pruned cache/.
    expect(fromDocker).toEqual(expect.arrayContaining(["f keep.txt", "f deep/er/keep.txt"]));
  });

  it("createBuildContext's tar builds on the engine and delivers the same files", async () => {
    const context = createBuildContext(spec(), { dockerfile: readFileSync(join(ctxDir, "Dockerfile"), "utf8") });
    await run(["build", "-q", "-t", FROM_STREAM, "-f", context.dockerfilePath, "-"], context.stream);
    const fromStream = (await listingOf(FROM_STREAM)).filter((line) => !/^\w kiln-layers(\/|$)/.test(line));
    expect(fromStream).toEqual(expectedFromWalk(spec()));
  });
});
