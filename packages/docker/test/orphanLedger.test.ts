// The per-user record of step containers builds lost with their daemon: atomic, private, tolerant
// of corrupt files, safe under concurrent writers, and blind to other endpoints' records.
import { fork } from "node:child_process";
import { createRequire } from "node:module";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { OrphanLedger, orphanDirectory } from "../src/orphanLedger.js";

const HERE = fileURLToPath(new URL(".", import.meta.url));
// The writer processes run this package's TypeScript through tsx, a dev dependency of the workspace's @kiln/core.
const require = createRequire(import.meta.url);
const TSX = pathToFileURL(createRequire(require.resolve("@kiln/core/package.json")).resolve("tsx")).href;
const ENDPOINT = "unix:///var/tmp/kiln-test/docker.sock";
const OTHER = "tcp://10.0.0.9:2376 (TLS, verified)";
const id = (n: number) => n.toString(16).padStart(12, "0").replace(/^0/, "a");

let dir: string;
beforeEach(async () => {
  dir = join(await mkdtemp(join(tmpdir(), "kiln-orphans-")), "orphan-containers");
});
afterEach(async () => {
  await rm(join(dir, ".."), { recursive: true, force: true });
});

describe("OrphanLedger", () => {
  it("lists nothing, cheaply, before anything was recorded (no directory)", () => {
    expect(new OrphanLedger(dir).list(ENDPOINT)).toEqual([]);
  });

  it("records and lists per endpoint; drop forgets one record and leaves the others", async () => {
    const ledger = new OrphanLedger(dir);
    ledger.record({ containerId: id(1), endpoint: ENDPOINT, recordedAt: 1000, image: "app:1" });
    ledger.record({ containerId: id(2), endpoint: ENDPOINT, recordedAt: 2000 });
    ledger.record({ containerId: id(3), endpoint: OTHER, recordedAt: 3000 });
    expect(ledger.writes).toBe(3);
    expect(ledger.list(ENDPOINT)).toEqual([
      { containerId: id(1), endpoint: ENDPOINT, recordedAt: 1000, image: "app:1" },
      { containerId: id(2), endpoint: ENDPOINT, recordedAt: 2000 },
    ]);
    ledger.drop(ENDPOINT, id(1));
    ledger.drop(ENDPOINT, id(1)); // already gone: fine
    expect(ledger.list(ENDPOINT).map((r) => r.containerId)).toEqual([id(2)]);
    expect(ledger.list(OTHER)).toEqual([{ containerId: id(3), endpoint: OTHER, recordedAt: 3000 }]);
  });

  it("writes private files (0600) in a private directory (0700), and no temp file stays", async () => {
    const ledger = new OrphanLedger(dir);
    ledger.record({ containerId: id(7), endpoint: ENDPOINT, recordedAt: Date.now() });
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    const files = await readdir(dir);
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(new RegExp(`^[0-9a-f]{16}-${id(7)}\\.json$`));
    expect((await stat(join(dir, files[0]!))).mode & 0o777).toBe(0o600);
  });

  it("refuses to record something that is not a container ID (nothing reaches a file name or a request)", () => {
    const ledger = new OrphanLedger(dir);
    for (const bad of ["../../etc/passwd", "ABCDEF123456", "abc", "a".repeat(65), "0123456789ab; rm -rf /"]) {
      expect(() => ledger.record({ containerId: bad, endpoint: ENDPOINT, recordedAt: 1 })).toThrow(/Not a container ID/);
    }
    expect(ledger.list(ENDPOINT)).toEqual([]);
  });

  it("deletes a corrupt record of its endpoint (never trusts it) and keeps the valid ones and other endpoints' files", async () => {
    const ledger = new OrphanLedger(dir);
    ledger.record({ containerId: id(1), endpoint: ENDPOINT, recordedAt: 1000 });
    ledger.record({ containerId: id(9), endpoint: OTHER, recordedAt: 9000 });
    const files = await readdir(dir);
    const ours = files.find((f) => f.endsWith(`-${id(1)}.json`))!;
    const prefix = ours.slice(0, 17);
    const otherFile = files.find((f) => f.endsWith(`-${id(9)}.json`))!;
    // Truncated JSON, a wrong shape, a record whose ID differs from its file name, another endpoint's corrupt file.
    await writeFile(join(dir, `${prefix}${id(2)}.json`), '{"version":1,"containerId":"', { mode: 0o600 });
    await writeFile(join(dir, `${prefix}${id(3)}.json`), JSON.stringify([1, 2, 3]), { mode: 0o600 });
    await writeFile(join(dir, `${prefix}${id(4)}.json`), JSON.stringify({ version: 1, containerId: id(5), endpoint: ENDPOINT, recordedAt: 1 }), { mode: 0o600 });
    const otherCorrupt = `${otherFile.slice(0, 17)}${id(6)}.json`;
    await writeFile(join(dir, otherCorrupt), "garbage", { mode: 0o600 });

    expect(ledger.list(ENDPOINT).map((r) => r.containerId)).toEqual([id(1)]);
    const left = (await readdir(dir)).sort();
    expect(left).toEqual([ours, otherFile, otherCorrupt].sort());
    expect(await readFile(join(dir, otherCorrupt), "utf8")).toBe("garbage");
  });

  it("tolerates a directory that is not readable as one (a file in its place): nothing listed, no throw", async () => {
    const parent = join(dir, "..");
    await writeFile(join(parent, "blocked"), "x");
    const ledger = new OrphanLedger(join(parent, "blocked"));
    expect(ledger.list(ENDPOINT)).toEqual([]);
    expect(() => ledger.record({ containerId: id(1), endpoint: ENDPOINT, recordedAt: 1 })).toThrow();
  });

  it("loses no record when several processes write and drop at once (no read-modify-write, no lock needed)", async () => {
    const writers = 4;
    const perWriter = 25;
    await Promise.all(
      Array.from({ length: writers }, (_, w) =>
        new Promise<void>((resolve, reject) => {
          const child = fork(join(HERE, "fixtures", "orphan-writer.ts"), [dir, ENDPOINT, String(w), String(perWriter)], {
            execArgv: ["--import", TSX],
            cwd: join(HERE, ".."),
            stdio: "inherit",
          });
          child.on("error", reject);
          child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`writer ${w} exited ${code}`))));
        }),
      ),
    );
    // Each writer dropped every second record it wrote, while the others were writing.
    const kept = writers * Math.ceil(perWriter / 2);
    const listed = new OrphanLedger(dir).list(ENDPOINT);
    expect(listed).toHaveLength(kept);
    expect(new Set(listed.map((r) => r.containerId)).size).toBe(kept);
    expect(new Set(listed.map((r) => r.image))).toEqual(new Set(Array.from({ length: writers }, (_, w) => `writer-${w}`)));
    expect((await readdir(dir)).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });

  it("lives beside Kiln's locks: KILN_LOCK_DIR from the given environment places it", () => {
    expect(orphanDirectory({ KILN_LOCK_DIR: "/somewhere/locks" })).toBe("/somewhere/locks/orphan-containers");
  });
});
