import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FileDigestCache, type StatIdentity } from "../src/statcache.js";

let root: string;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "kiln-statcache-"));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const old = Date.now() - 60_000; // outside the racy window
const idOf = (n: number): StatIdentity => ({ size: n * 7, mtimeMs: old + n + 0.25, ctimeMs: old + n + 0.5, ino: 1000 + n, dev: 42 });
const digestOf = (n: number) => createHash("sha256").update(`content ${n}`).digest("hex");
const pathOf = (n: number) => `/src/tree/d${n % 7}/f${String(n).padStart(5, "0")}.txt`;

function filled(file: string, count: number): FileDigestCache {
  const cache = new FileDigestCache(file);
  for (let n = 0; n < count; n++) cache.set(pathOf(n), idOf(n), digestOf(n));
  cache.save();
  return cache;
}

function hexOf(cache: FileDigestCache, row: number): string {
  const out = Buffer.alloc(64);
  cache.writeHex(row, out, 0);
  return out.toString("latin1");
}

describe("FileDigestCache lookups", () => {
  it("answers in stored order, in any other order, and after growing a loaded table", () => {
    const file = join(root, "order.bin");
    filled(file, 3000); // more rows than the initial capacity: the table grows while filling

    const inOrder = new FileDigestCache(file);
    for (let n = 0; n < 3000; n++) {
      const row = inOrder.lookup(pathOf(n), idOf(n));
      expect(row).toBeGreaterThanOrEqual(0);
      expect(hexOf(inOrder, row)).toBe(digestOf(n));
    }

    const shuffled = new FileDigestCache(file);
    for (let n = 2999; n >= 0; n -= 3) expect(shuffled.get(pathOf(n), idOf(n))).toBe(digestOf(n));
    expect(shuffled.get(pathOf(3000), idOf(3000))).toBeUndefined();

    // New rows on top of the loaded (adopted) arrays, then persisted and read back.
    for (let n = 3000; n < 3500; n++) shuffled.set(pathOf(n), idOf(n), digestOf(n));
    shuffled.set(pathOf(5), idOf(5), digestOf(99_999)); // an existing row updated in place
    shuffled.save();
    const reread = new FileDigestCache(file);
    expect(reread.size).toBe(3500);
    expect(reread.get(pathOf(5), idOf(5))).toBe(digestOf(99_999));
    for (let n = 0; n < 3500; n += 97) if (n !== 5) expect(reread.get(pathOf(n), idOf(n))).toBe(digestOf(n));
  });

  it("misses when any part of the stat identity differs", () => {
    const file = join(root, "identity.bin");
    filled(file, 10);
    const cache = new FileDigestCache(file);
    const base = idOf(4);
    for (const field of ["size", "mtimeMs", "ctimeMs", "ino", "dev"] as const) {
      expect(cache.lookup(pathOf(4), { ...base, [field]: base[field] + 1 }), field).toBe(-1);
    }
    expect(cache.lookup(pathOf(4), base)).toBeGreaterThanOrEqual(0);
    // A miss at the cursor's position must not make the next in-order lookup fail.
    expect(cache.get(pathOf(5), idOf(5))).toBe(digestOf(5));
  });
});
