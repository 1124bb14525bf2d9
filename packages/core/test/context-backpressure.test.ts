/**
 * Issue 12 item 7b — streaming a large source file through a slow consumer must not pile up
 * listeners (it used to print MaxListenersExceededWarning: one `close` and one `error` listener were
 * added on every backpressure wait and never removed).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createBuildContext } from "../src/context.js";
import type { ImageSpec } from "../src/layers.js";

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "kiln-backpressure-"));
  process.env.KILN_HASH_CACHE = "off";
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

it("streams a large file slowly through a consumer with backpressure without any process warning", async () => {
  const dir = join(root, "data");
  mkdirSync(dir);
  const size = 40 << 20; // 40 one-MiB chunks: 40 waits for the consumer
  writeFileSync(join(dir, "big.bin"), Buffer.alloc(size, 3));
  const spec: ImageSpec = {
    base: { kind: "image", ref: "busybox:1.36" },
    layers: [{ kind: "sourceFolder", hostPath: dir, dest: "/data" }],
    name: "big",
    platform: ["linux/amd64"],
    installer: "pip",
    uvImage: "ghcr.io/astral-sh/uv:0.5.0",
    extendable: true,
  };

  const warnings: Error[] = [];
  const onWarning = (warning: Error) => warnings.push(warning);
  process.on("warning", onWarning);
  try {
    let received = 0;
    let writes = 0;
    // A consumer that takes a small chunk at a time and pauses between them.
    const slow = new Writable({
      highWaterMark: 64 * 1024,
      write(chunk: Buffer, _encoding, done) {
        received += chunk.length;
        if (++writes % 8 === 0) setTimeout(done, 2);
        else setImmediate(done);
      },
    });
    await pipeline(createBuildContext(spec, { dockerfile: "FROM x\n" }).stream, slow);
    expect(received).toBeGreaterThan(size);
    // Warnings are emitted on the next tick.
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.off("warning", onWarning);
  }
  expect(warnings.map((w) => `${w.name}: ${w.message}`)).toEqual([]);
}, 60_000);
