// Deterministic benchmark tree: `files` files totalling about `totalBytes`, 100 per directory in a
// two-level layout, sizes spread from 1 KiB to ~2× the mean, every 10th file executable, contents
// from a seeded generator (incompressible, different in every file). Re-used when already present.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export function generateTree(dir, files, totalBytes) {
  const marker = join(dir, "..", "tree.json");
  const params = JSON.stringify({ version: 1, files, totalBytes });
  if (existsSync(marker) && readFileSync(marker, "utf8").startsWith(params.slice(0, -1))) {
    const saved = JSON.parse(readFileSync(marker, "utf8"));
    return { created: false, files: saved.files, bytes: saved.bytes };
  }
  rmSync(dir, { recursive: true, force: true });
  const mean = totalBytes / files;
  // A 4 MiB pool of pseudo-random bytes (sha256 chain from a fixed seed); files are windows into it.
  const pool = Buffer.alloc(4 << 20);
  let block = createHash("sha256").update("kiln-bench-seed").digest();
  for (let offset = 0; offset < pool.length; offset += 32) {
    block.copy(pool, offset);
    block = createHash("sha256").update(block).digest();
  }
  let bytes = 0;
  for (let i = 0; i < files; i++) {
    const sub = join(dir, `d${String(Math.floor(i / 1000)).padStart(2, "0")}`, `s${String(Math.floor(i / 100) % 10)}`);
    if (i % 100 === 0) mkdirSync(sub, { recursive: true });
    // Sizes cycle through 1 KiB .. 2·mean - 1 KiB: the mean is `mean`.
    const size = Math.round(1024 + (((i * 7919) % 1000) / 999) * (2 * mean - 2048));
    const start = (i * 104729) % (pool.length - size);
    const header = Buffer.from(`file ${i}\n`);
    const body = Buffer.concat([header, pool.subarray(start, start + size - header.length)]);
    writeFileSync(join(sub, `f${String(i).padStart(5, "0")}.dat`), body, { mode: i % 10 === 0 ? 0o755 : 0o644 });
    bytes += body.length;
  }
  writeFileSync(marker, JSON.stringify({ version: 1, files, totalBytes, bytes }));
  return { created: true, files, bytes };
}
