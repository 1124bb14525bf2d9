/**
 * Issue 12 item 1 — the bytes sent are the bytes hashed. Each race is driven deterministically by the
 * testing-only snapshot hooks (snapshotHooks.ts): a file is swapped between the listing and the
 * hashing, or between the tag and the streaming, and the build must stop with SourceChangedError
 * naming the file — never follow a link, never block on a FIFO, never send bytes the tag did not hash.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { ImageBuild, ImageBuilder } from "../src/builder.js";
import { createBuildContext } from "../src/context.js";
import { renderDockerfile } from "../src/dockerfile.js";
import { build, init } from "../src/engine.js";
import { SourceChangedError } from "../src/errors.js";
import { computeTag } from "../src/hash.js";
import { Image } from "../src/image.js";
import type { ImageSpec } from "../src/layers.js";
import { pinSources, snapshotOf, snapshotSpec } from "../src/snapshot.js";
import { setSnapshotTestHooks } from "../src/snapshotHooks.js";
import { FileDigestCache } from "../src/statcache.js";

let root: string;
let n = 0;
const children: ChildProcess[] = [];

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "kiln-snapshot-"));
  process.env.KILN_HASH_CACHE = "off";
  process.env.KILN_LOCK_DIR = join(root, "locks");
  init({ projectDir: join(root, "project") });
});
afterEach(() => {
  setSnapshotTestHooks(undefined);
  for (const child of children.splice(0)) child.kill("SIGKILL");
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A source folder with `app.txt` ("public-data\n") and a same-size root-only-like secret outside it. */
function tree(): { dir: string; file: string; secret: string } {
  const base = join(root, `t${n++}`);
  const dir = join(base, "src");
  mkdirSync(join(dir, "lib"), { recursive: true });
  writeFileSync(join(dir, "app.txt"), "public-data\n");
  writeFileSync(join(dir, "lib", "util.txt"), "util\n");
  const secret = join(base, "secret.txt");
  writeFileSync(secret, "SECRET-KEY!\n"); // same size as app.txt
  return { dir, file: join(dir, "app.txt"), secret };
}

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

function toSymlink(file: string, target: string): void {
  unlinkSync(file);
  symlinkSync(target, file);
}

function toFifo(file: string): void {
  unlinkSync(file);
  execFileSync("mkfifo", [file]);
}

/**
 * A writer that opens the FIFO after `ms`: code that (wrongly) blocks opening it for reading is
 * released then, so a regression fails the assertions instead of hanging the run. Killed after the test.
 */
function releaseFifoAfter(fifo: string, ms: number): void {
  const child = spawn("timeout", ["20", "sh", "-c", `sleep ${ms / 1000}; echo released > "$1"`, "sh", fifo], { stdio: "ignore" });
  children.push(child);
}

/** Drains a context stream: every byte it emitted, and the error it ended with (if any). */
async function drain(stream: Readable): Promise<{ bytes: Buffer; error: unknown }> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    return { bytes: Buffer.concat(chunks), error: undefined };
  } catch (error) {
    return { bytes: Buffer.concat(chunks), error };
  }
}

function expectChanged(error: unknown, file: string, what: RegExp): void {
  expect(SourceChangedError.isInstance(error), String(error)).toBe(true);
  expect((error as Error).message).toContain(JSON.stringify(file));
  expect((error as Error).message).toMatch(what);
  expect((error as SourceChangedError).hint).toMatch(/run the build again/);
}

describe("hashing for the tag opens each listed file without following links or blocking", () => {
  it("a symlink put in a file's place after the listing is not followed: SourceChangedError, not the link target's digest", () => {
    const { dir, file, secret } = tree();
    setSnapshotTestHooks({ afterListing: () => toSymlink(file, secret) });
    let error: unknown;
    try {
      computeTag(spec(dir), { cache: false });
    } catch (e) {
      error = e;
    }
    expectChanged(error, file, /replaced by a symbolic link/);
  });

  it("a FIFO put in a file's place after the listing fails at once instead of blocking the process", () => {
    const { dir, file } = tree();
    setSnapshotTestHooks({
      afterListing: () => {
        toFifo(file);
        releaseFifoAfter(file, 4000);
      },
    });
    const started = Date.now();
    let error: unknown;
    try {
      snapshotSpec(spec(dir), { cache: false });
    } catch (e) {
      error = e;
    }
    expect(Date.now() - started).toBeLessThan(3000);
    expectChanged(error, file, /no longer a regular file \(now a FIFO\)/);
  });

  it("a FIFO in place of a folder's .dockerignore fails the listing at once instead of blocking", () => {
    const { dir } = tree();
    execFileSync("mkfifo", [join(dir, ".dockerignore")]);
    releaseFifoAfter(join(dir, ".dockerignore"), 4000);
    const started = Date.now();
    expect(() => computeTag(spec(dir), { cache: false })).toThrow(/\.dockerignore" is not a regular file/);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it("a file that changes size between the listing and the hashing is refused, not hashed as read", () => {
    const { dir, file } = tree();
    setSnapshotTestHooks({ afterListing: () => writeFileSync(file, "public-data, longer now\n") });
    expect(() => computeTag(spec(dir), { cache: false })).toThrow(/grew from 12 to 24 bytes/);
  });
});

describe("the build context streams the snapshot the tag was computed from", () => {
  it("a symlink put in a file's place after the tag is not followed: the stream fails and the target's bytes are never sent", async () => {
    const { dir, file, secret } = tree();
    const { snapshot } = snapshotSpec(spec(dir), { cache: false });
    setSnapshotTestHooks({ beforeStreaming: () => toSymlink(file, secret) });
    const { bytes, error } = await drain(createBuildContext(spec(dir), { dockerfile: "FROM x\n", snapshot }).stream);
    expectChanged(error, file, /replaced by a symbolic link/);
    expect(bytes.includes("SECRET-KEY")).toBe(false);
  });

  it("a FIFO put in a file's place after the tag fails the stream at once", async () => {
    const { dir, file } = tree();
    const { snapshot } = snapshotSpec(spec(dir), { cache: false });
    setSnapshotTestHooks({
      beforeStreaming: () => {
        toFifo(file);
        releaseFifoAfter(file, 4000);
      },
    });
    const started = Date.now();
    const { error } = await drain(createBuildContext(spec(dir), { dockerfile: "FROM x\n", snapshot }).stream);
    expect(Date.now() - started).toBeLessThan(3000);
    expectChanged(error, file, /now a FIFO/);
  });

  it("a file saved after the tag (same size, same inode) fails before its last bytes are sent", async () => {
    const { dir, file } = tree();
    const { snapshot } = snapshotSpec(spec(dir), { cache: false });
    setSnapshotTestHooks({ beforeStreaming: () => writeFileSync(file, "PUBLIC-DATA\n") });
    const { bytes, error } = await drain(createBuildContext(spec(dir), { dockerfile: "FROM x\n", snapshot }).stream);
    expectChanged(error, file, /content changed \(sha256 [0-9a-f]{12}… when the tag was computed/);
    expect(bytes.includes("PUBLIC-DATA")).toBe(false);
    expect(bytes.includes("public-data")).toBe(false);
  });

  it("a file removed or replaced by another file after the tag fails the stream, naming it", async () => {
    const { dir, file } = tree();
    const { snapshot } = snapshotSpec(spec(dir), { cache: false });
    setSnapshotTestHooks({ beforeStreaming: () => unlinkSync(file) });
    expectChanged((await drain(createBuildContext(spec(dir), { dockerfile: "FROM x\n", snapshot }).stream)).error, file, /it was removed/);

    const other = tree();
    const pinned = snapshotSpec(spec(other.dir), { cache: false }).snapshot;
    setSnapshotTestHooks({
      beforeStreaming: () => {
        // Same bytes, another inode (an editor's save-by-rename): created while the old one exists.
        writeFileSync(`${other.file}.new`, "public-data\n");
        renameSync(`${other.file}.new`, other.file);
      },
    });
    expectChanged(
      (await drain(createBuildContext(spec(other.dir), { dockerfile: "FROM x\n", snapshot: pinned }).stream)).error,
      other.file,
      /replaced by another file/,
    );
  });

  it("a file added after the tag is not sent: the context is the listing", async () => {
    const { dir } = tree();
    const { snapshot } = snapshotSpec(spec(dir), { cache: false });
    writeFileSync(join(dir, "late.txt"), "late\n");
    const context = createBuildContext(spec(dir), { dockerfile: "FROM x\n", snapshot });
    expect(context.files).not.toContain("kiln-layers/0/late.txt");
    const { error } = await drain(context.stream);
    expect(error).toBeUndefined();
  });

  it("a Dockerfile rendered from other bytes than the hashed ones is refused, even if the file is back as hashed", async () => {
    for (const layers of [[], [{ kind: "labels" as const, labels: [["a", "b"]] as Array<[string, string]> }]]) {
      const { dir } = tree();
      const dockerfile = join(dir, "..", "Dockerfile");
      writeFileSync(dockerfile, "FROM busybox\nCOPY . /app\n");
      const s: ImageSpec = { ...spec(dir), layers, base: { kind: "dockerfile", dockerfileHostPath: dockerfile, contextHostPath: dir, buildArgs: [] } };
      const { snapshot } = snapshotSpec(s, { cache: false });
      expect(await drain(createBuildContext(s, { dockerfile: renderDockerfile(s), snapshot }).stream)).toMatchObject({ error: undefined });
      // Saved between the tag and the rendering, then restored: the file is as hashed, the rendering is not.
      writeFileSync(dockerfile, "FROM busybox\nCOPY . /app\nRUN echo injected\n");
      const rendered = renderDockerfile(s);
      writeFileSync(dockerfile, "FROM busybox\nCOPY . /app\n");
      const { error } = await drain(createBuildContext(s, { dockerfile: rendered, snapshot }).stream);
      expectChanged(error, snapshot.files.dockerfile!.hostPath, /the Dockerfile rendered for the build is not the one hashed/);
    }
  });

  it("a stale digest from the stat cache is forgotten, so the next run hashes the file again", () => {
    const cache = new FileDigestCache(undefined);
    const id = { size: 1, mtimeMs: 1, ctimeMs: 1, ino: 1, dev: 1 };
    cache.set("/x", id, "a".repeat(64));
    expect(cache.lookup("/x", id)).not.toBe(-1);
    cache.forget("/x");
    expect(cache.lookup("/x", id)).toBe(-1);
  });
});

describe("the engine pins one snapshot per build", () => {
  /** A builder that streams the context of the image it is given and "pushes" only if that succeeds. */
  class StreamingBuilder implements ImageBuilder {
    pushed: Array<{ uri: string; bytes: Buffer }> = [];
    seen: Image[] = [];
    async buildImage(image: Image): Promise<ImageBuild> {
      this.seen.push(image);
      const { bytes, error } = await drain(createBuildContext(image, { dockerfile: "FROM x\n" }).stream);
      if (error) throw error;
      this.pushed.push({ uri: image.uri, bytes });
      return { uri: image.uri };
    }
  }

  const image = (dir: string) => Image.fromBase("busybox:1.36", { name: `pinned-${n++}` }).withSourceFolder(dir, "/app");

  it("binds the snapshot the tag was computed from to the image the builder gets", async () => {
    const { dir } = tree();
    const builder = new StreamingBuilder();
    const declared = image(dir);
    const result = await build(declared, { builder, force: true });
    expect(result.outcome).toBe("built");
    const given = builder.seen[0]!;
    expect(given.spec.tag).toBe(declared.tag);
    expect(snapshotOf(given)?.tag).toBe(declared.tag);
    expect(snapshotOf(declared)).toBeUndefined(); // the user's image is not pinned: the next build snapshots anew
    expect(builder.pushed[0]!.bytes.includes("public-data")).toBe(true);
  });

  it("a file saved after the tag was computed fails the build with SourceChangedError and nothing is pushed", async () => {
    const { dir, file } = tree();
    const builder = new StreamingBuilder();
    setSnapshotTestHooks({ beforeStreaming: () => writeFileSync(file, "PUBLIC-DATA\n") });
    const error = await build(image(dir), { builder, force: true }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expectChanged(error, file, /content changed/);
    expect(builder.pushed).toEqual([]);
  });

  it("pinSources keeps an explicit tag and snapshots lazily, once, for the whole build", () => {
    const { dir, file } = tree();
    const pinned = pinSources(image(dir).clone({ tag: "v1" }));
    expect(pinned.tag).toBe("v1");
    const first = snapshotOf(pinned)!;
    writeFileSync(file, "changed later\n");
    expect(snapshotOf(pinned)).toBe(first);
    expect(pinSources(pinned)).toBe(pinned);
  });
});
