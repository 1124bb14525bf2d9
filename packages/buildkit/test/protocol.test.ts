// Unit tests of the hand-written wire pieces: fsutil path order and selection, packets, Control
// messages, endpoint and cache parsing. (The integration tests prove them against real daemons.)
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, Image, SourceChangedError } from "@kiln/core";
import { encodeGrpcFrame, GrpcStatusError, grpcFrameParts, readFields, type StreamingCall } from "@kiln/docker/internal";
import { describe, expect, it } from "vitest";
import { defaultCacheRef, parseCacheEntry, resolveCache } from "../src/cache.js";
import { decodeSolveResponse, encodeBytesMessage, encodeBytesMessageHeader, encodeSolveRequest, mapField } from "../src/controlMessages.js";
import { parseEndpoint, resolveEndpoints } from "../src/endpoints.js";
import { EndpointPool } from "../src/pool.js";
import { contentExactModTime } from "../src/sources.js";
import {
  comparePath,
  decodePacket,
  diffCopyHandler,
  encodeDataPacketParts,
  encodePacket,
  encodeStat,
  SourceTree,
  type SourceEntry,
} from "@kiln/docker/internal";

const file = (path: string, size = 1): SourceEntry => ({ path, type: "file", mode: 0o644, size, modTimeNs: 5n, content: Buffer.alloc(size) });

describe("fsutil order and selection", () => {
  it("orders paths as fsutil's ComparePath does: a directory's entries right after it ('/' sorts first)", () => {
    const paths = ["a-b", "a/z", "a", "a.txt", "a/b/c"];
    expect([...paths].sort(comparePath)).toEqual(["a", "a/b/c", "a/z", "a-b", "a.txt"]);
  });

  it("adds every missing parent directory, before its children", () => {
    const tree = new SourceTree([file("kiln-layers/0/x/y.txt"), file("kiln-layers/1/z.txt")]);
    expect(tree.entries.map((e) => `${e.type}:${e.path}`)).toEqual([
      "dir:kiln-layers",
      "dir:kiln-layers/0",
      "dir:kiln-layers/0/x",
      "file:kiln-layers/0/x/y.txt",
      "dir:kiln-layers/1",
      "file:kiln-layers/1/z.txt",
    ]);
  });

  it("applies the daemon's exclude patterns, and include patterns with the directories leading to them", () => {
    const tree = new SourceTree([file("Dockerfile"), file("a/keep.txt"), file("a/drop.log"), file("b/c.txt")]);
    expect(tree.select([], ["**/*.log"]).map((e) => e.path)).toEqual(["a", "a/keep.txt", "b", "b/c.txt", "Dockerfile"].sort(comparePath));
    expect(tree.select(["a/keep.txt"], []).map((e) => e.path)).toEqual(["a", "a/keep.txt"]);
    expect(tree.select(["b"], []).map((e) => e.path)).toEqual(["b", "b/c.txt"]);
  });

  it("follow paths select only what they name (a `.dockerignore` read of a context without one sends nothing)", () => {
    const tree = new SourceTree([file("kiln-layers/0/a.bin"), file("kiln-layers/1/b.bin"), file("x.json"), file("y.json"), file("z.txt")]);
    expect(tree.select([], [], [".dockerignore"])).toEqual([]);
    expect(tree.select([], [], ["kiln-layers/0"]).map((e) => e.path)).toEqual(["kiln-layers", "kiln-layers/0", "kiln-layers/0/a.bin"]);
    expect(tree.select([], [], ["*.json"]).map((e) => e.path)).toEqual(["x.json", "y.json"]);
    // The root (or a path cleaning to it) means no filter, as in fsutil's dedupePaths.
    expect(tree.select([], [], ["kiln-layers/0", "."])).toHaveLength(tree.entries.length);
  });

  it("follow paths through a symlink also select its target (fsutil FollowLinks)", () => {
    const link = (path: string, linkTarget: string): SourceEntry => ({ path, type: "symlink", mode: 0o777, size: 0, modTimeNs: 5n, linkTarget });
    const tree = new SourceTree([file("real/x.txt"), file("real/y.txt"), link("current", "real"), link("abs", "/real/y.txt"), file("other.txt")]);
    expect(tree.select([], [], ["current/x.txt"]).map((e) => e.path)).toEqual(["current", "real", "real/x.txt"]);
    expect(tree.select([], [], ["abs"]).map((e) => e.path)).toEqual(["abs", "real", "real/y.txt"]);
  });
});

describe("filesync DiffCopy", () => {
  /** Runs the handler as the daemon would call it, FIN after the stats; returns the STAT paths sent. */
  async function statsSent(tree: SourceTree, metadata: Record<string, string[]>): Promise<string[]> {
    const sent: Buffer[] = [];
    let statsDone!: () => void;
    const ended = new Promise<void>((resolve) => (statsDone = resolve));
    const call: StreamingCall = {
      headers: {},
      values: (key) => metadata[key] ?? [],
      messages: (async function* () {
        await ended;
        yield encodePacket(3);
      })(),
      send: async (message) => {
        const packet = Buffer.concat(Buffer.isBuffer(message) ? [message] : [...message]);
        sent.push(packet);
        if (packet.length === 0) statsDone(); // the empty STAT ends the listing
      },
      signal: new AbortController().signal,
    };
    await diffCopyHandler(new Map([["context", tree]]))(call);
    const paths: string[] = [];
    for (const packet of sent) {
      const stat = [...readFields(packet)].find((f) => f.field === 2);
      if (stat) paths.push([...readFields(stat.wire.value as Buffer)].find((f) => f.field === 1)!.wire.value.toString());
    }
    return paths;
  }

  it("honours `followpaths`, query-decoded when flagged `-encoded` (non-ASCII paths, buildkit filesync encodeOpts)", async () => {
    const tree = new SourceTree([file("déjà/vu.txt"), file("big/blob.bin")]);
    expect(await statsSent(tree, { "dir-name": ["context"], followpaths: [".dockerignore"] })).toEqual([]);
    expect(await statsSent(tree, { "dir-name": ["context"], followpaths: ["d%C3%A9j%C3%A0"], "followpaths-encoded": ["1"] })).toEqual(["déjà", "déjà/vu.txt"]);
  });

  it("a listed file whose content is not the pinned one ends the transfer at once: no FIN awaited, Kiln's SourceChangedError reported", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kiln-bk-listed-"));
    try {
      const hostPath = join(dir, "a.txt");
      writeFileSync(hostPath, "edited!\n");
      const st = statSync(hostPath);
      const entry = {
        path: "a.txt",
        contextPath: "a.txt",
        hostPath,
        type: "file",
        size: st.size,
        executable: false,
        mtimeMs: st.mtimeMs,
        ctimeMs: st.ctimeMs,
        ino: st.ino,
        dev: st.dev,
      } as const;
      const digest = createHash("sha256").update("original\n").digest(); // what was hashed for the tag
      const tree = new SourceTree([{ path: "a.txt", type: "file", mode: 0o644, size: st.size, modTimeNs: 1n, hostPath, listed: { entry, digest } }]);
      const failures: unknown[] = [];
      const call: StreamingCall = {
        headers: {},
        values: (key) => (key === "dir-name" ? ["context"] : []),
        // The receiver asks for file 0, then waits for its bytes (it never sends FIN on its own).
        messages: (async function* () {
          yield encodePacket(1, { id: 0 });
          await new Promise(() => undefined);
        })(),
        send: async () => undefined,
        signal: new AbortController().signal,
      };
      const error = await diffCopyHandler(new Map([["context", tree]]), undefined, (e) => failures.push(e))(call).catch((e) => e);
      expect(error).toBeInstanceOf(GrpcStatusError);
      expect(error.message).toContain("a.txt");
      expect(SourceChangedError.isInstance(failures[0])).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a file's modTime keeps its second and takes its nanoseconds from its content digest", () => {
    const a = createHash("sha256").update("a").digest();
    const b = createHash("sha256").update("b").digest();
    const when = { mtimeMs: 1_700_000_000_123.456 };
    expect(contentExactModTime(when, a) / 1_000_000_000n).toBe(1_700_000_000n);
    expect(contentExactModTime(when, a)).not.toBe(contentExactModTime(when, b));
    expect(contentExactModTime(when, a)).toBe(contentExactModTime({ mtimeMs: 1_700_000_000_999 }, a));
  });

  it("a DATA packet's parts are the packet; a BytesMessage header + data is the message; gRPC frame parts are the frame", () => {
    const data = Buffer.from("x".repeat(300));
    expect(Buffer.concat(encodeDataPacketParts(7, data))).toEqual(encodePacket(2, { id: 7, data }));
    expect(Buffer.concat(encodeDataPacketParts(0, data))).toEqual(encodePacket(2, { data }));
    expect(Buffer.concat([encodeBytesMessageHeader(data.length), data])).toEqual(encodeBytesMessage(data));
    expect(Buffer.concat(grpcFrameParts([Buffer.from("ab"), data]))).toEqual(encodeGrpcFrame(Buffer.concat([Buffer.from("ab"), data])));
  });
});

describe("fsutil packets", () => {
  it("a STAT carries a Go FileMode (dir bit 1<<31), size and modTime; REQ/DATA round-trip", () => {
    const stat = encodeStat({ path: "d", type: "dir", mode: 0o755, size: 0, modTimeNs: 0n });
    const fields = [...readFields(stat)];
    expect(fields.find((f) => f.field === 2)?.wire).toEqual({ wireType: 0, value: BigInt(0x80000000 + 0o755) });
    const symlink = [...readFields(encodeStat({ path: "l", type: "symlink", mode: 0o777, size: 0, modTimeNs: 1n, linkTarget: "t" }))];
    expect(symlink.find((f) => f.field === 2)?.wire).toEqual({ wireType: 0, value: BigInt(0x08000000 + 0o777) });
    expect(symlink.find((f) => f.field === 7)?.wire.value.toString()).toBe("t");
    expect(decodePacket(encodePacket(1, { id: 7 }))).toMatchObject({ type: 1, id: 7 });
    expect(decodePacket(encodePacket(2, { id: 3, data: Buffer.from("xy") })).data.toString()).toBe("xy");
    // The end-of-stats packet is an empty STAT.
    expect(encodePacket(0)).toHaveLength(0);
  });
});

describe("Control messages", () => {
  it("SolveRequest maps are sorted key/value entries; SolveResponse maps decode", () => {
    const request = encodeSolveRequest({
      ref: "r",
      frontend: "dockerfile.v0",
      frontendAttrs: { b: "2", a: "1" },
      cacheExports: [{ type: "registry", attrs: { ref: "x" } }],
    });
    const fields = [...readFields(request)];
    expect(fields.map((f) => f.field)).toEqual([1, 6, 7, 7, 8]);
    expect(decodeSolveResponse(Buffer.concat(mapField(1, { "containerimage.digest": "sha256:abc" })))).toEqual({ "containerimage.digest": "sha256:abc" });
  });
});

describe("endpoints", () => {
  it("docker-engine by default; KILN_BUILDKIT_HOST as a pool with pinned platforms; options win", () => {
    expect(resolveEndpoints(undefined, {}).map((e) => e.kind)).toEqual(["docker-engine"]);
    const pool = resolveEndpoints(undefined, { KILN_BUILDKIT_HOST: "unix:///run/bk.sock, tcp://arm:1234;platforms=linux/arm64" });
    expect(pool.map((e) => [e.kind, e.address, e.platforms])).toEqual([
      ["unix", "unix:///run/bk.sock", []],
      ["tcp", "tcp://arm:1234", ["linux/arm64"]],
    ]);
    expect(resolveEndpoints(["docker-engine"], { KILN_BUILDKIT_HOST: "unix:///x" }).map((e) => e.kind)).toEqual(["docker-engine"]);
  });

  it("rejects unknown schemes and a certificate without its key (ConfigError)", () => {
    expect(() => parseEndpoint({ host: "http://x:1" })).toThrow(ConfigError);
    expect(() => parseEndpoint({ host: "tcp://x:1", tls: { cert: Buffer.from("c") } })).toThrow(ConfigError);
    expect(() => resolveEndpoints(undefined, { KILN_BUILDKIT_HOST: "tcp://x:1;bogus=1" })).toThrow(ConfigError);
  });
});

describe("endpoint pool: splitting an image's platforms", () => {
  const pool = (...entries: string[]) => new EndpointPool(resolveEndpoints(undefined, { KILN_BUILDKIT_HOST: entries.join(",") }));

  it("platforms pinned to different endpoints are split, one group per endpoint; platforms pinned nowhere go together", () => {
    expect(pool("unix:///amd.sock;platforms=linux/amd64", "unix:///arm.sock;platforms=linux/arm64").split(["linux/amd64", "linux/arm64"])).toEqual([
      ["linux/amd64"],
      ["linux/arm64"],
    ]);
    expect(pool("unix:///any.sock", "unix:///arm.sock;platforms=linux/arm64").split(["linux/amd64", "linux/arm64"])).toEqual([
      ["linux/amd64"],
      ["linux/arm64"],
    ]);
  });

  it("one group when an endpoint is pinned to every platform, when only one endpoint is pinned to any, or for one platform", () => {
    expect(pool("unix:///a.sock;platforms=linux/amd64", "unix:///both.sock;platforms=linux/amd64+linux/arm64").split(["linux/amd64", "linux/arm64"])).toEqual([
      ["linux/amd64", "linux/arm64"],
    ]);
    expect(pool("unix:///a.sock;platforms=linux/amd64+linux/arm64", "unix:///b.sock").split(["linux/amd64", "linux/arm64"])).toEqual([
      ["linux/amd64", "linux/arm64"],
    ]);
    expect(pool("unix:///a.sock", "unix:///b.sock").split(["linux/amd64", "linux/arm64"])).toEqual([["linux/amd64", "linux/arm64"]]);
    expect(pool("unix:///a.sock;platforms=linux/amd64", "unix:///b.sock;platforms=linux/arm64").split(["linux/arm64"])).toEqual([["linux/arm64"]]);
  });
});

describe("registry cache options", () => {
  const image = Image.fromBase("busybox", { registry: "127.0.0.1:5000/acme", name: "api" });
  const standalone = parseEndpoint({ host: "unix:///run/bk.sock" });

  it("the default cache ref is `<registry>/<name>:buildcache`; exports default to mode=max", () => {
    expect(defaultCacheRef(image)).toBe("127.0.0.1:5000/acme/api:buildcache");
    expect(resolveCache(image, { cacheFrom: true, cacheTo: true }, standalone, {})).toEqual({
      cacheImports: [{ type: "registry", attrs: { ref: "127.0.0.1:5000/acme/api:buildcache" } }],
      cacheExports: [{ type: "registry", attrs: { ref: "127.0.0.1:5000/acme/api:buildcache", mode: "max" } }],
    });
    expect(parseCacheEntry("type=registry,ref=h/r:c,mode=min")).toEqual({ type: "registry", attrs: { ref: "h/r:c", mode: "min" } });
  });

  it("the engine's BuildKit gets imports only (it cannot export a registry cache), with the reason", () => {
    const resolved = resolveCache(image, { cacheFrom: true, cacheTo: true }, parseEndpoint({ host: "docker-engine" }), {});
    expect(resolved.cacheExports).toEqual([]);
    expect(resolved.cacheImports).toHaveLength(1);
    expect(resolved.skipped).toMatch(/cannot export/);
  });
});
