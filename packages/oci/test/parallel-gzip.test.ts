/**
 * Layers are gzip'd in blocks on libuv's threadpool (parallelGzip.ts). What must hold: the result is
 * one valid gzip stream that standard readers (zlib, the gzip CLI, Python) decode to the input; the
 * bytes depend neither on how the input arrives, nor on how many blocks run at once, nor on
 * UV_THREADPOOL_SIZE; and the ratio stays that of one deflate stream.
 */
import { execFile, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { constants, deflateRawSync, gunzipSync, gzipSync } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { GZIP_OPTIONS, writeLayer } from "../src/layerFile.js";
import { entropyBitsPerByte, parallelGzip } from "../src/parallelGzip.js";

const execFileAsync = promisify(execFile);
const tempDirs: string[] = [];
afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

const BLOCK = 64 * 1024;
const options = { ...GZIP_OPTIONS, blockBytes: BLOCK };

async function gzipAll(input: Buffer, chunkSizes: number[], concurrency: number): Promise<Buffer> {
  async function* chunks(): AsyncGenerator<Buffer> {
    let offset = 0;
    let i = 0;
    while (offset < input.length) {
      const size = chunkSizes[i++ % chunkSizes.length]!;
      yield input.subarray(offset, offset + size);
      offset += size;
    }
  }
  const out: Buffer[] = [];
  for await (const part of parallelGzip(chunks(), { ...options, concurrency })) out.push(part);
  return Buffer.concat(out);
}

/** Text that compresses, with repeats far apart (across blocks) and random runs in between. */
function mixed(size: number): Buffer {
  const parts: Buffer[] = [];
  let total = 0;
  for (let i = 0; total < size; i++) {
    const part = i % 5 === 4 ? randomBytes(3000) : Buffer.from(`${"the quick brown fox ".repeat(20)}${i % 97}\n`);
    parts.push(part);
    total += part.length;
  }
  return Buffer.concat(parts).subarray(0, size);
}

describe("parallel gzip", () => {
  it.each([0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK, 5 * BLOCK + 12345])("decodes to the input with zlib, gzip(1) and Python (%i bytes)", async (size) => {
    const input = mixed(size);
    const gz = await gzipAll(input, [7000, 1, 100_000], 4);
    expect(gunzipSync(gz).equals(input)).toBe(true);
    const dir = mkdtempSync(join(tmpdir(), "kiln-pgz-"));
    tempDirs.push(dir);
    writeFileSync(join(dir, "x.gz"), gz);
    const sha = createHash("sha256").update(input).digest("hex");
    const viaGzip = await execFileAsync("sh", ["-c", `gzip -t x.gz && gzip -dc x.gz | sha256sum`], { cwd: dir });
    expect(viaGzip.stdout.split(" ")[0]).toBe(sha);
    const viaPython = await execFileAsync("python3", [
      "-c",
      "import gzip,hashlib,sys; print(hashlib.sha256(gzip.open(sys.argv[1]).read()).hexdigest())",
      join(dir, "x.gz"),
    ]);
    expect(viaPython.stdout.trim()).toBe(sha);
    // One gzip member: the trailer holds the CRC-32 and length of all the input.
    expect(gz.readUInt32LE(gz.length - 4)).toBe(size % 2 ** 32);
    expect(gz.readUInt32LE(gz.length - 8)).toBe(gzipSync(input).readUInt32LE(gzipSync(input).length - 8));
  });

  it("gives the same bytes whatever the input's chunking and the blocks in flight", async () => {
    const input = mixed(9 * BLOCK + 777);
    const reference = await gzipAll(input, [BLOCK], 1);
    for (const [chunks, concurrency] of [
      [[1, 4096, 250_000], 2],
      [[33_333], 8],
      [[9 * BLOCK + 777], 16],
      [[512], 3],
    ] as const) {
      expect((await gzipAll(input, [...chunks], concurrency)).equals(reference)).toBe(true);
    }
  });

  it("compresses as well as one deflate stream (the previous block is the dictionary)", async () => {
    const input = mixed(8 * BLOCK);
    const parallel = await gzipAll(input, [BLOCK], 4);
    const single = gzipSync(input, GZIP_OPTIONS);
    // Without dictionaries each block would start cold; with them the size is within 1% of one stream.
    expect(parallel.length).toBeLessThan(single.length * 1.01);
  });

  it("reads ahead of the consumer, several blocks in flight, a bounded number", async () => {
    const input = randomBytes(16 * BLOCK);
    let inFlightMax = 0;
    let reading = 0;
    // The consumer is slow to pull: the generator must already have the next blocks submitted, which
    // shows as input read ahead of the output handed out.
    async function* chunks(): AsyncGenerator<Buffer> {
      for (let offset = 0; offset < input.length; offset += BLOCK) {
        reading = offset + BLOCK;
        yield input.subarray(offset, offset + BLOCK);
      }
    }
    let emitted = 0;
    const parts: Buffer[] = [];
    for await (const part of parallelGzip(chunks(), { ...options, concurrency: 4 })) {
      parts.push(part);
      if (part.length > 100) {
        emitted += BLOCK;
        inFlightMax = Math.max(inFlightMax, (reading - emitted) / BLOCK);
      }
    }
    expect(gunzipSync(Buffer.concat(parts)).equals(input)).toBe(true);
    expect(inFlightMax).toBeGreaterThanOrEqual(4);
    // At most 2 × concurrency + 2 deflated blocks waiting, plus the block held back and the one being read.
    expect(inFlightMax).toBeLessThanOrEqual(4 * 2 + 2 + 2);
  });
});

describe("random-looking blocks are stored, not deflated", () => {
  it("a block of random bytes is a stored deflate block; a compressible one is deflated at the set level", async () => {
    const random = randomBytes(BLOCK);
    const text = mixed(BLOCK);
    expect(entropyBitsPerByte(random)).toBeGreaterThanOrEqual(GZIP_OPTIONS.storeAboveEntropy);
    expect(entropyBitsPerByte(text)).toBeLessThan(GZIP_OPTIONS.storeAboveEntropy);
    const gz = await gzipAll(Buffer.concat([random, text]), [BLOCK], 2);
    // The output buffer size matters to how zlib cuts stored blocks: the one parallelGzip uses.
    const zlibOptions = { windowBits: GZIP_OPTIONS.windowBits, memLevel: GZIP_OPTIONS.memLevel, strategy: GZIP_OPTIONS.strategy, chunkSize: BLOCK + 64 * 1024 };
    const stored = deflateRawSync(random, { ...zlibOptions, level: 0, finishFlush: constants.Z_SYNC_FLUSH });
    const deflated = deflateRawSync(text, { ...zlibOptions, level: GZIP_OPTIONS.level, dictionary: random.subarray(BLOCK - 32 * 1024) });
    // header (10) + block 1 + block 2 + trailer (8)
    expect(gz.subarray(10, 10 + stored.length).equals(stored)).toBe(true);
    expect(gz.subarray(10 + stored.length, gz.length - 8).equals(deflated)).toBe(true);
    expect(gunzipSync(gz).equals(Buffer.concat([random, text]))).toBe(true);
  });
});

describe("writeLayer", () => {
  it("writes a multi-block layer whose digest is the same with UV_THREADPOOL_SIZE 1, 2 and 8", () => {
    const digests = ["1", "2", "8"].map((threads) => {
      const dir = mkdtempSync(join(tmpdir(), "kiln-pgz-layer-"));
      tempDirs.push(dir);
      const child = spawnSync(
        process.execPath,
        ["--import", "tsx", join(import.meta.dirname, "fixtures", "layer-digest.ts"), dir, String(5 * 1024 * 1024 + 4321)],
        {
          env: { ...process.env, UV_THREADPOOL_SIZE: threads },
          encoding: "utf8",
          timeout: 120_000,
        },
      );
      expect(child.status, child.stderr).toBe(0);
      const result = JSON.parse(child.stdout) as { digest: string; diffId: string; size: number };
      const file = readFileSync(join(dir, "layer.tar.gz"));
      expect(result.size).toBe(file.length);
      expect(result.digest).toBe(`sha256:${createHash("sha256").update(file).digest("hex")}`);
      expect(result.diffId).toBe(`sha256:${createHash("sha256").update(gunzipSync(file)).digest("hex")}`);
      return result.digest;
    });
    expect(new Set(digests).size).toBe(1);
  });

  it("writes a layer as several deflate blocks, not one stream", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kiln-pgz-layer-"));
    tempDirs.push(dir);
    const input = mixed(3 * GZIP_OPTIONS.blockBytes);
    const written = await writeLayer(
      dir,
      "l",
      (async function* () {
        yield input;
      })(),
    );
    const file = readFileSync(written.path);
    expect(gunzipSync(file).subarray(0, input.length).equals(input)).toBe(true);
    // A sync flush between blocks leaves the empty stored block 00 00 ff ff at each boundary.
    expect(countOf(file, Buffer.from([0x00, 0x00, 0xff, 0xff]))).toBeGreaterThanOrEqual(3);
  });
});

function countOf(haystack: Buffer, needle: Buffer): number {
  let count = 0;
  for (let at = haystack.indexOf(needle); at !== -1; at = haystack.indexOf(needle, at + 1)) count++;
  return count;
}
