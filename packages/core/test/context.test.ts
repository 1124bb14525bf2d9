import { createHash } from "node:crypto";
import { appendFileSync, cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import tar from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SourceNotFoundError } from "../src/errors.js";
import { SourceChangedError, createBuildContext } from "../src/context.js";
import { renderDockerfile } from "../src/dockerfile.js";
import type { ImageSpec, Layer } from "../src/layers.js";
import { compareUtf8, listSpecFiles, walkDirectory } from "../src/walk.js";

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "kiln-context-"));
  process.env.KILN_HASH_CACHE = "off";
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

function spec(layers: Layer[], extra: Partial<ImageSpec> = {}): ImageSpec {
  return {
    base: { kind: "image", ref: "busybox:1.36" },
    layers,
    name: "app",
    platform: ["linux/amd64"],
    installer: "pip",
    uvImage: "ghcr.io/astral-sh/uv:0.5.0",
    extendable: true,
    ...extra,
  };
}

interface TarEntry {
  name: string;
  type: string;
  mode: number;
  size: number;
  mtime: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  linkname: string | null;
  content: string;
}

async function readTar(stream: Readable): Promise<TarEntry[]> {
  const entries: TarEntry[] = [];
  const extract = tar.extract();
  const done = new Promise<void>((resolve, reject) => {
    extract.on("entry", (h, body, next) => {
      const chunks: Buffer[] = [];
      body.on("data", (c: unknown) => chunks.push(c as Buffer));
      body.on("end", () => {
        entries.push({
          name: h.name,
          type: h.type,
          mode: h.mode,
          size: h.size,
          mtime: h.mtime.getTime(),
          uid: h.uid,
          gid: h.gid,
          uname: h.uname,
          gname: h.gname,
          linkname: h.linkname ?? null,
          content: Buffer.concat(chunks).toString("utf8"),
        });
        next();
      });
    });
    extract.on("finish", () => resolve());
    extract.on("error", reject);
    stream.on("error", reject);
  });
  stream.pipe(extract as unknown as NodeJS.WritableStream);
  await done;
  return entries;
}

async function sha256Of(stream: Readable): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

let n = 0;
function makeTree(): string {
  const dir = join(root, `tree-${n++}`);
  mkdirSync(join(dir, "pkg", "__pycache__"), { recursive: true });
  mkdirSync(join(dir, ".git"), { recursive: true });
  mkdirSync(join(dir, "empty"));
  writeFileSync(join(dir, "main.py"), "print('hello')\n");
  writeFileSync(join(dir, "pkg", "mod.py"), "X = 1\n");
  writeFileSync(join(dir, "pkg", "__pycache__", "mod.pyc"), "bytecode");
  writeFileSync(join(dir, ".git", "HEAD"), "ref\n");
  writeFileSync(join(dir, "run.sh"), "#!/bin/sh\n", { mode: 0o750 });
  symlinkSync("../../../etc/passwd", join(dir, "escape"));
  return dir;
}

describe("createBuildContext", () => {
  it("streams a deterministic tar of the rendered Dockerfile and each layer's files", async () => {
    const tree = makeTree();
    const req = join(root, "requirements.txt");
    writeFileSync(req, "six==1.16.0\n");
    const s = spec([
      { kind: "aptPackages", packages: ["git"] },
      { kind: "requirements", hostPath: req, name: "requirements.txt" },
      { kind: "sourceFolder", hostPath: tree, dest: "/app" },
    ]);
    const ctx = createBuildContext(s, { dockerfile: "FROM busybox:1.36\n" });
    expect(ctx.dockerfilePath).toBe("Dockerfile");
    const entries = await readTar(ctx.stream);
    expect(entries.map((e) => e.name)).toEqual(ctx.files);
    expect(ctx.files).toEqual([
      "kiln-layers",
      "Dockerfile",
      "kiln-layers/1",
      "kiln-layers/1/requirements.txt",
      "kiln-layers/2",
      "kiln-layers/2/empty",
      "kiln-layers/2/escape",
      "kiln-layers/2/main.py",
      "kiln-layers/2/pkg",
      "kiln-layers/2/pkg/mod.py",
      "kiln-layers/2/run.sh",
    ]);
    const byName = new Map(entries.map((e) => [e.name, e]));
    expect(byName.get("Dockerfile")!.content).toBe("FROM busybox:1.36\n");
    expect(byName.get("kiln-layers/2/main.py")).toMatchObject({ type: "file", mode: 0o644, content: "print('hello')\n" });
    expect(byName.get("kiln-layers/2/run.sh")).toMatchObject({ type: "file", mode: 0o755 });
    expect(byName.get("kiln-layers/2/pkg")).toMatchObject({ type: "directory", mode: 0o755 });
    // A symlink stays a link: nothing outside the tree is read through it.
    expect(byName.get("kiln-layers/2/escape")).toMatchObject({ type: "symlink", linkname: "../../../etc/passwd", content: "" });
    for (const e of entries) expect(e).toMatchObject({ mtime: 0, uid: 0, gid: 0, uname: "", gname: "" });
  });

  it("is byte-identical across runs and across checkouts", async () => {
    const tree = makeTree();
    const copy = join(root, `copy-${n++}`, "nested");
    cpSync(tree, copy, { recursive: true, verbatimSymlinks: true });
    const make = (dir: string) => createBuildContext(spec([{ kind: "sourceFolder", hostPath: dir, dest: "/app" }]), { dockerfile: "FROM x\n" }).stream;
    const first = await sha256Of(make(tree));
    expect(await sha256Of(make(tree))).toBe(first);
    expect(await sha256Of(make(copy))).toBe(first);
  });

  it("fails with SourceChangedError, not a corrupt tar, when a file grows or shrinks while streaming", async () => {
    const tree = makeTree();
    const grow = createBuildContext(spec([{ kind: "sourceFolder", hostPath: tree, dest: "/app" }]), { dockerfile: "FROM x\n" });
    appendFileSync(join(tree, "main.py"), "more\n");
    const error = await readTar(grow.stream).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(SourceChangedError.isInstance(error)).toBe(true);
    expect((error as Error).message).toContain(join(tree, "main.py"));
    expect((error as Error).message).toMatch(/grew/);

    const shrink = createBuildContext(spec([{ kind: "sourceFolder", hostPath: tree, dest: "/app" }]), { dockerfile: "FROM x\n" });
    writeFileSync(join(tree, "main.py"), "");
    const error2 = await readTar(shrink.stream).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(SourceChangedError.isInstance(error2)).toBe(true);
    expect((error2 as Error).message).toMatch(/shrank/);
  });

  it("reads lazily and respects backpressure on a large file", async () => {
    const dir = join(root, `big-${n++}`);
    mkdirSync(dir);
    writeFileSync(join(dir, "big.bin"), Buffer.alloc(48 << 20, 7));
    const ctx = createBuildContext(spec([{ kind: "sourceFolder", hostPath: dir, dest: "/data" }]), { dockerfile: "FROM x\n" });
    const iterator = ctx.stream[Symbol.asyncIterator]();
    await iterator.next();
    await new Promise((resolve) => setTimeout(resolve, 300));
    // Nobody is reading: the producer must have stopped far short of the 48 MiB file.
    expect(ctx.stream.readableLength).toBeLessThan(4 << 20);
    let total = 0;
    for (let r = await iterator.next(); !r.done; r = await iterator.next()) total += (r.value as Buffer).length;
    expect(total).toBeGreaterThan(48 << 20);
  });

  it("fails at once with SourceNotFoundError naming a missing source", () => {
    const missing = join(root, "nope");
    expect(() => createBuildContext(spec([{ kind: "sourceFile", hostPath: missing, dest: "/x" }]), { dockerfile: "FROM x\n" })).toThrow(missing);
    try {
      createBuildContext(spec([{ kind: "sourceFolder", hostPath: missing, dest: "/x" }]), { dockerfile: "FROM x\n" });
    } catch (error) {
      expect(SourceNotFoundError.isInstance(error)).toBe(true);
    }
    expect.assertions(2);
  });

  it("puts a fromDockerfile context at the root, filtered by its .dockerignore, with the Dockerfile beside the layers", async () => {
    const ctxDir = join(root, `dctx-${n++}`);
    mkdirSync(join(ctxDir, "src"), { recursive: true });
    writeFileSync(join(ctxDir, "src", "a.txt"), "a");
    writeFileSync(join(ctxDir, "notes.tmp"), "tmp");
    writeFileSync(join(ctxDir, ".dockerignore"), "*.tmp\n");
    const dockerfileName = `elsewhere-${n++}.Dockerfile`;
    const dockerfile = join(root, dockerfileName);
    writeFileSync(dockerfile, "FROM busybox\n");
    const extraName = `extra-${n++}.txt`;
    const extra = join(root, extraName);
    writeFileSync(extra, "e");
    const s = spec([{ kind: "sourceFile", hostPath: extra, dest: "/e.txt" }], {
      base: { kind: "dockerfile", dockerfileHostPath: dockerfile, contextHostPath: ctxDir, buildArgs: [] },
    });
    // The rendering of exactly the Dockerfile that was hashed (any other text is refused).
    const ctx = createBuildContext(s, { dockerfile: renderDockerfile(s) });
    expect(ctx.dockerfilePath).toBe("kiln-layers/Dockerfile");
    const entries = await readTar(ctx.stream);
    expect(entries.map((e) => e.name)).toEqual([
      ".dockerignore",
      "src",
      "src/a.txt",
      "kiln-layers",
      "kiln-layers/Dockerfile",
      "kiln-layers/0",
      `kiln-layers/0/${extraName}`,
    ]);
    // The user's Dockerfile lies outside the context: listed for the tag, not sent.
    expect(listSpecFiles(s).dockerfile).toMatchObject({ path: dockerfileName, type: "file" });
    // The rendered Dockerfile is appended to the user's .dockerignore, so the daemon drops it after reading.
    expect(entries.find((e) => e.name === ".dockerignore")?.content).toBe("*.tmp\nkiln-layers/Dockerfile\n");
  });

  it("sends a fromDockerfile image's own Dockerfile in place, as docker build does", async () => {
    const ctxDir = join(root, `dctx-${n++}`);
    mkdirSync(join(ctxDir, "docker"), { recursive: true });
    writeFileSync(join(ctxDir, "app.txt"), "a");
    writeFileSync(join(ctxDir, "docker", "Dockerfile"), "FROM busybox\nCOPY . /app\n");
    const s = spec([], { base: { kind: "dockerfile", dockerfileHostPath: join(ctxDir, "docker", "Dockerfile"), contextHostPath: ctxDir, buildArgs: [] } });
    const ctx = createBuildContext(s, { dockerfile: "FROM busybox\nCOPY . /app\n" });
    expect(ctx.dockerfilePath).toBe("docker/Dockerfile");
    expect((await readTar(ctx.stream)).map((e) => e.name)).toEqual(["app.txt", "docker", "docker/Dockerfile"]);
  });

  it("sends a Dockerfile from outside the context hidden and ignored, as the docker CLI does", async () => {
    const ctxDir = join(root, `dctx-${n++}`);
    mkdirSync(ctxDir, { recursive: true });
    writeFileSync(join(ctxDir, "app.txt"), "a");
    const dockerfile = join(root, `outside-${n++}.Dockerfile`);
    writeFileSync(dockerfile, "FROM busybox\nCOPY . /app\n");
    const s = spec([], { base: { kind: "dockerfile", dockerfileHostPath: dockerfile, contextHostPath: ctxDir, buildArgs: [] } });
    const ctx = createBuildContext(s, { dockerfile: "FROM busybox\nCOPY . /app\n" });
    expect(ctx.dockerfilePath).toBe(".dockerfile.kiln");
    const entries = await readTar(ctx.stream);
    expect(entries.map((e) => e.name)).toEqual([".dockerignore", "app.txt", ".dockerfile.kiln"]);
    expect(entries[0]!.content).toBe(".dockerfile.kiln\n");
  });
});

describe("walk", () => {
  it("sorts paths bytewise (UTF-8), with directories before their contents", () => {
    const dir = join(root, `sort-${n++}`);
    mkdirSync(join(dir, "a"), { recursive: true });
    for (const name of ["a.txt", "B", "b", "é", "\uE000", "😀", "a-b"]) writeFileSync(join(dir, name), "");
    writeFileSync(join(dir, "a", "b"), "");
    const paths = walkDirectory(dir, []).map((e) => e.path);
    const bytewise = [...paths].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    expect(paths).toEqual(bytewise);
    expect(paths.indexOf("a")).toBeLessThan(paths.indexOf("a/b"));
    expect(compareUtf8("\uE000", "😀")).toBeLessThan(0); // UTF-16 order would say the opposite
  });

  it("prunes an excluded directory unless a `!` pattern starts with it, like the docker CLI", () => {
    const dir = join(root, `prune-${n++}`);
    for (const d of ["build/sub", "cache/sub"]) mkdirSync(join(dir, d), { recursive: true });
    for (const f of ["build/keep.txt", "build/drop.txt", "build/sub/keep.txt", "cache/keep.txt", "cache/sub/keep.txt", "keep.txt"])
      writeFileSync(join(dir, f), "");
    const paths = walkDirectory(dir, ["build", "cache", "!build/keep.txt", "!**/keep.txt"]).map((e) => e.path);
    // build/ is walked (a `!` pattern starts with "build/"); cache/ is not, even though !**/keep.txt would match inside.
    // build/sub is pruned too: no `!` pattern starts with "build/sub/".
    expect(paths).toEqual(["build/keep.txt", "keep.txt"]);
  });
});
