/**
 * gzip on every core, as pigz does, with bytes that never depend on timing or thread count.
 *
 * The input is cut into fixed-size blocks at fixed offsets (`blockBytes`, whatever sizes the input
 * arrives in). Each block is deflated on its own — raw deflate through Node's async zlib, which runs
 * on libuv's threadpool, several blocks at once — with the last 32 KiB of the block before it as the
 * preset dictionary (so the ratio stays that of one stream) and ended with a sync flush (an empty
 * stored block: byte-aligned, not final); the last block is finished normally. The deflate streams
 * concatenated are one valid deflate stream, wrapped in ONE gzip member: a fixed 10-byte header
 * (no name, mtime 0, XFL 0, OS 3 — what zlib writes for level 6) and the trailer (CRC-32 of all
 * the input, computed here as blocks pass, and its length mod 2^32). Any gzip reader takes it:
 * Go's compress/gzip (Docker, containerd, registries), gzip/pigz, zlib, Python.
 *
 * Each block's output depends only on its bytes, its dictionary and the fixed settings, and blocks
 * are emitted in input order, so the result is the same on any machine with the same zlib, with
 * any UV_THREADPOOL_SIZE. A block that looks random (`storeAboveEntropy`) is stored, not deflated.
 * Memory: at most 2 × concurrency + 2 blocks read ahead, with their outputs (a few MiB).
 */
import { availableParallelism } from "node:os";
import { constants, crc32, deflateRaw } from "node:zlib";
import { promisify } from "node:util";

export interface ParallelGzipOptions {
  level: number;
  windowBits: number;
  memLevel: number;
  strategy: number;
  /** Bytes of input per independently deflated block. */
  blockBytes: number;
  /**
   * A block whose bytes carry at least this many bits of order-0 entropy per byte (8 = uniformly
   * random) is stored (deflate level 0) rather than compressed: already-compressed or random data
   * gains nothing from deflate, which would spend most of a layer's build time on it. A pure
   * function of the block's bytes, so it never changes determinism. Omitted: every block deflated.
   */
  storeAboveEntropy?: number;
  /** Blocks deflated at once (default: cores + 1, at most threadpool size − 1). Never changes the bytes. */
  concurrency?: number;
}

const DICTIONARY_BYTES = 32 * 1024;
/** ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=3 (unix): what zlib writes for a level-6 gzip with no name. */
const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03]);

const deflateRawAsync = promisify(deflateRaw) as (data: Buffer, options: Record<string, unknown>) => Promise<Buffer>;

export function defaultGzipConcurrency(env: NodeJS.ProcessEnv = process.env): number {
  const threadpool = Number(env.UV_THREADPOOL_SIZE) || 4;
  // One block more than the cores keeps them busy while the next block's input is read; one
  // threadpool thread stays free for the file reads and writes around the deflates.
  return Math.max(2, Math.min(availableParallelism() + 1, threadpool - 1, 16));
}

/** The gzip bytes of `input` (one member), in order, as blocks are done. */
export async function* parallelGzip(input: AsyncIterable<Buffer>, options: ParallelGzipOptions): AsyncGenerator<Buffer> {
  const { blockBytes } = options;
  if (!Number.isSafeInteger(blockBytes) || blockBytes < DICTIONARY_BYTES) throw new RangeError(`blockBytes must be an integer ≥ ${DICTIONARY_BYTES}`);
  const concurrency = Math.max(1, options.concurrency ?? defaultGzipConcurrency());
  // Input read ahead of the consumer: reading, deflating and the consumer's writes overlap, so a
  // slow read or write (the threadpool and the CPU are shared) does not leave the deflaters idle.
  const maxQueued = concurrency * 2 + 2;
  const zlibOptions = {
    level: options.level,
    windowBits: options.windowBits,
    memLevel: options.memLevel,
    strategy: options.strategy,
    // One output buffer per block: the whole block is deflated in one threadpool task.
    // (Also fixes where zlib cuts stored blocks: it is part of what the bytes depend on.)
    chunkSize: blockBytes + 64 * 1024,
  };

  /** Deflated blocks, in input order, not yet handed out. */
  const outputs: Array<Promise<Buffer>> = [];
  let crc = 0;
  let length = 0;
  let previous: Buffer | undefined;
  // At most `concurrency` deflates on the threadpool, so its other threads stay free for file I/O.
  let deflating = 0;
  const slotWaiters: Array<() => void> = [];
  const acquireSlot = async (): Promise<void> => {
    while (deflating >= concurrency) await new Promise<void>((resolve) => slotWaiters.push(resolve));
    deflating++;
  };
  const releaseSlot = (): void => {
    deflating--;
    slotWaiters.shift()?.();
  };
  let wakeConsumer: (() => void) | undefined;
  let wakeProducer: (() => void) | undefined;
  const wake = (which: "consumer" | "producer"): void => {
    const resolve = which === "consumer" ? wakeConsumer : wakeProducer;
    if (which === "consumer") wakeConsumer = undefined;
    else wakeProducer = undefined;
    resolve?.();
  };

  const submit = (block: Buffer, last: boolean): void => {
    crc = crc32(block, crc);
    length += block.length;
    const dictionary = previous ? previous.subarray(previous.length - DICTIONARY_BYTES) : undefined;
    const store = options.storeAboveEntropy !== undefined && block.length > 0 && entropyBitsPerByte(block) >= options.storeAboveEntropy;
    const deflated = acquireSlot()
      .then(() =>
        deflateRawAsync(block, {
          ...zlibOptions,
          ...(store ? { level: 0 } : {}),
          ...(dictionary ? { dictionary } : {}),
          finishFlush: last ? constants.Z_FINISH : constants.Z_SYNC_FLUSH,
        }),
      )
      .finally(releaseSlot);
    // Awaited in order by the consumer; a failure while earlier blocks are awaited must not go unhandled.
    deflated.catch(() => undefined);
    outputs.push(deflated);
    previous = block;
    wake("consumer");
  };

  let stopped = false;
  let inputDone = false;
  let failure: { error: unknown } | undefined;
  const produce = async (): Promise<void> => {
    try {
      // A full block is submitted only once more input exists: the last block is finished, not flushed.
      let waiting: Buffer | undefined;
      let held: Buffer[] = [];
      let heldBytes = 0;
      for await (const data of input) {
        if (stopped) return;
        let chunk = data;
        while (heldBytes + chunk.length >= blockBytes) {
          const take = blockBytes - heldBytes;
          held.push(chunk.subarray(0, take));
          chunk = chunk.subarray(take);
          const block = Buffer.concat(held, blockBytes);
          held = [];
          heldBytes = 0;
          if (waiting) {
            submit(waiting, false);
            while (outputs.length >= maxQueued && !stopped) await new Promise<void>((resolve) => (wakeProducer = resolve));
            if (stopped) return;
          }
          waiting = block;
        }
        if (chunk.length > 0) {
          // The producer may reuse its buffer: keep a copy.
          held.push(Buffer.from(chunk));
          heldBytes += chunk.length;
        }
      }
      if (heldBytes > 0) {
        if (waiting) submit(waiting, false);
        submit(Buffer.concat(held, heldBytes), true);
      } else {
        // An empty input is the empty deflate stream.
        submit(waiting ?? Buffer.alloc(0), true);
      }
    } catch (error) {
      failure = { error };
    } finally {
      inputDone = true;
      wake("consumer");
    }
  };

  yield GZIP_HEADER;
  const producing = produce();
  try {
    for (;;) {
      const next = outputs.shift();
      if (next) {
        wake("producer");
        yield await next;
        continue;
      }
      if (failure) throw failure.error;
      if (inputDone) break;
      await new Promise<void>((resolve) => (wakeConsumer = resolve));
    }
  } finally {
    stopped = true;
    wake("producer");
    await producing;
  }
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc >>> 0, 0);
  trailer.writeUInt32LE(length % 2 ** 32, 4);
  yield trailer;
}

/** Order-0 (byte histogram) Shannon entropy of `data`, in bits per byte (0–8). */
export function entropyBitsPerByte(data: Uint8Array): number {
  const counts = new Uint32Array(256);
  for (let i = 0; i < data.length; i++) counts[data[i]!]! += 1;
  let bits = 0;
  for (let b = 0; b < 256; b++) {
    const c = counts[b]!;
    if (c > 0) bits -= c * Math.log2(c / data.length);
  }
  return bits / data.length;
}
