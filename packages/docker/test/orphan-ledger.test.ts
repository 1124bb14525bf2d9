// The per-user record of step containers builds lost with their daemon: atomic, private, tolerant
// of corrupt files, safe under concurrent writers, blind to other endpoints' records — and blind to
// anything another local user could have planted (a shared /tmp lock directory, foreign or writable
// or symlinked directories and files).
import { execFileSync, fork } from "node:child_process";
import { createRequire } from "node:module";
import { chmod, chown, mkdtemp, readdir, readFile, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DockerDaemon } from "../src/daemon/daemon.js";
import { sweepOrphanContainers } from "../src/orphans/orphanContainers.js";
import { OrphanLedger, orphanDirectory, UnsafeOrphanDirectoryError } from "../src/orphans/orphanLedger.js";

const HERE = fileURLToPath(new URL(".", import.meta.url));
// The writer processes run this package's TypeScript through tsx, a dev dependency of the workspace's @kiln/core.
const require = createRequire(import.meta.url);
const TSX = pathToFileURL(createRequire(require.resolve("@kiln/core/package.json")).resolve("tsx")).href;
const ENDPOINT = "unix:///var/tmp/kiln-test/docker.sock";
const OTHER = "tcp://10.0.0.9:2376 (TLS, verified)";
const id = (n: number) => n.toString(16).padStart(12, "0").replace(/^0/, "a");
/** Another local user (tests run as root, which may hand files to anyone). */
const NOBODY = 65534;

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
    ledger.record({ containerId: id(1), endpoint: ENDPOINT, recordedAt: 1000, buildStartedAt: 1000, image: "app:1" });
    ledger.record({ containerId: id(2), endpoint: ENDPOINT, recordedAt: 2000, buildStartedAt: 2000 });
    ledger.record({ containerId: id(3), endpoint: OTHER, recordedAt: 3000, buildStartedAt: 3000 });
    expect(ledger.writes).toBe(3);
    expect(ledger.list(ENDPOINT)).toEqual([
      { containerId: id(1), endpoint: ENDPOINT, recordedAt: 1000, buildStartedAt: 1000, image: "app:1" },
      { containerId: id(2), endpoint: ENDPOINT, recordedAt: 2000, buildStartedAt: 2000 },
    ]);
    ledger.drop(ENDPOINT, id(1));
    ledger.drop(ENDPOINT, id(1)); // already gone: fine
    expect(ledger.list(ENDPOINT).map((r) => r.containerId)).toEqual([id(2)]);
    expect(ledger.list(OTHER)).toEqual([{ containerId: id(3), endpoint: OTHER, recordedAt: 3000, buildStartedAt: 3000 }]);
  });

  it("writes private files (0600) in a private directory (0700), and no temp file stays", async () => {
    const ledger = new OrphanLedger(dir);
    ledger.record({ containerId: id(7), endpoint: ENDPOINT, recordedAt: Date.now(), buildStartedAt: Date.now() - 1000 });
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    const files = await readdir(dir);
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(new RegExp(`^[0-9a-f]{16}-${id(7)}\\.json$`));
    expect((await stat(join(dir, files[0]!))).mode & 0o777).toBe(0o600);
  });

  it("refuses to record something that is not a container ID (nothing reaches a file name or a request)", () => {
    const ledger = new OrphanLedger(dir);
    for (const bad of ["../../etc/passwd", "ABCDEF123456", "abc", "a".repeat(65), "0123456789ab; rm -rf /"]) {
      expect(() => ledger.record({ containerId: bad, endpoint: ENDPOINT, recordedAt: 1, buildStartedAt: 1 })).toThrow(/Not a container ID/);
    }
    expect(ledger.list(ENDPOINT)).toEqual([]);
  });

  it("deletes a corrupt record of its endpoint (never trusts it) and keeps the valid ones and other endpoints' files", async () => {
    const ledger = new OrphanLedger(dir);
    ledger.record({ containerId: id(1), endpoint: ENDPOINT, recordedAt: 1000, buildStartedAt: 1000 });
    ledger.record({ containerId: id(9), endpoint: OTHER, recordedAt: 9000, buildStartedAt: 9000 });
    const files = await readdir(dir);
    const ours = files.find((f) => f.endsWith(`-${id(1)}.json`))!;
    const prefix = ours.slice(0, 17);
    const otherFile = files.find((f) => f.endsWith(`-${id(9)}.json`))!;
    // Truncated JSON, a wrong shape, a record whose ID differs from its file name, another endpoint's corrupt file;
    // a version-1 record (no buildStartedAt: its container cannot be checked), a build start after the record.
    await writeFile(join(dir, `${prefix}${id(2)}.json`), '{"version":1,"containerId":"', { mode: 0o600 });
    await writeFile(join(dir, `${prefix}${id(3)}.json`), JSON.stringify([1, 2, 3]), { mode: 0o600 });
    await writeFile(
      join(dir, `${prefix}${id(4)}.json`),
      JSON.stringify({ version: 2, containerId: id(5), endpoint: ENDPOINT, recordedAt: 1, buildStartedAt: 1 }),
      { mode: 0o600 },
    );
    await writeFile(join(dir, `${prefix}${id(7)}.json`), JSON.stringify({ version: 1, containerId: id(7), endpoint: ENDPOINT, recordedAt: 1 }), {
      mode: 0o600,
    });
    await writeFile(
      join(dir, `${prefix}${id(8)}.json`),
      JSON.stringify({ version: 2, containerId: id(8), endpoint: ENDPOINT, recordedAt: 1, buildStartedAt: 2 }),
      { mode: 0o600 },
    );
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
    expect(() => ledger.record({ containerId: id(1), endpoint: ENDPOINT, recordedAt: 1, buildStartedAt: 1 })).toThrow();
  });

  it("loses no record when several processes write and drop at once (no read-modify-write, no lock needed)", async () => {
    const writers = 4;
    const perWriter = 25;
    await Promise.all(
      Array.from(
        { length: writers },
        (_, w) =>
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

  describe("planted records: a directory or file another user could have written is never trusted", () => {
    const recorded = (ledger: OrphanLedger, ...ns: number[]) => {
      for (const n of ns) ledger.record({ containerId: id(n), endpoint: ENDPOINT, recordedAt: 5000 + n, buildStartedAt: 5000 });
    };
    const fileOf = async (n: number) => join(dir, (await readdir(dir)).find((f) => f.endsWith(`-${id(n)}.json`))!);

    /** Nothing listed, nothing written, nothing dropped — and the reason names the directory. */
    async function expectUnused(ledger: OrphanLedger, directory: string, reason: RegExp) {
      const before = (await readdir(dir)).sort();
      expect(ledger.list(ENDPOINT)).toEqual([]);
      const why = ledger.unsafeReason();
      expect(why).toContain(directory);
      expect(why).toMatch(reason);
      expect(() => ledger.record({ containerId: id(9), endpoint: ENDPOINT, recordedAt: 9, buildStartedAt: 9 })).toThrow(UnsafeOrphanDirectoryError);
      ledger.drop(ENDPOINT, id(1));
      expect((await readdir(dir)).sort()).toEqual(before);
    }

    it("a shared ledger directory (mode 0777, as another user would pre-create it in /tmp): ignored, and kept that way", async () => {
      const ledger = new OrphanLedger(dir);
      recorded(ledger, 1);
      await chmod(dir, 0o777);
      await expectUnused(ledger, dir, /writable by group or others \(mode 0777\)/);
      expect((await stat(dir)).mode & 0o777).toBe(0o777); // record() did not quietly "fix" and then trust it
    });

    it("a ledger directory owned by another user, even a private one (0700): ignored", async () => {
      const ledger = new OrphanLedger(dir);
      recorded(ledger, 1);
      await chown(dir, NOBODY, NOBODY);
      await expectUnused(ledger, dir, new RegExp(`owned by uid ${NOBODY}, not by this user`));
    });

    it("a lock directory (the parent) that is shared or another user's: ignored", async () => {
      const ledger = new OrphanLedger(dir);
      recorded(ledger, 1);
      const parent = join(dir, "..");
      await chmod(parent, 0o1777);
      await expectUnused(ledger, parent, /writable by group or others/);
      await chmod(parent, 0o700);
      await chown(parent, NOBODY, NOBODY);
      await expectUnused(ledger, parent, /owned by uid 65534/);
      await chown(parent, process.getuid!(), process.getgid!());
      expect(ledger.list(ENDPOINT).map((r) => r.containerId)).toEqual([id(1)]); // the same records, once it is ours again
    });

    it("a symlinked ledger directory (even to a private directory of ours, with valid records): never followed", async () => {
      const real = new OrphanLedger(dir);
      recorded(real, 1);
      const linked = join(dir, "..", "linked");
      await symlink(dir, linked);
      const ledger = new OrphanLedger(linked);
      expect(ledger.list(ENDPOINT)).toEqual([]);
      expect(ledger.unsafeReason()).toBe(`${linked} is a symbolic link, not a directory`);
      expect(() => ledger.record({ containerId: id(2), endpoint: ENDPOINT, recordedAt: 9, buildStartedAt: 9 })).toThrow(UnsafeOrphanDirectoryError);
      expect(real.list(ENDPOINT).map((r) => r.containerId)).toEqual([id(1)]);
    });

    it("record files that are writable by others, another user's, a symlink or a FIFO: ignored (not followed, not read, not deleted)", async () => {
      const ledger = new OrphanLedger(dir);
      recorded(ledger, 1, 2, 3, 4, 5);
      const [shared, foreign, linked, fifo] = [await fileOf(2), await fileOf(3), await fileOf(4), await fileOf(5)];
      await chmod(shared, 0o666);
      await chown(foreign, NOBODY, NOBODY);
      // A valid record of ours, elsewhere, reached through a symlink named like a record.
      const elsewhere = join(dir, "..", "elsewhere.json");
      await rename(linked, elsewhere);
      await symlink(elsewhere, linked);
      await rm(fifo);
      execFileSync("mkfifo", ["-m", "600", fifo]); // would block a plain read forever
      const before = (await readdir(dir)).sort();

      const started = Date.now();
      expect(ledger.list(ENDPOINT).map((r) => r.containerId)).toEqual([id(1)]);
      expect(Date.now() - started).toBeLessThan(2_000);
      expect((await readdir(dir)).sort()).toEqual(before);
    });

    it("the sweep says which directory it will not use and why, once, and asks no daemon", async () => {
      const ledger = new OrphanLedger(dir);
      recorded(ledger, 1);
      await chmod(dir, 0o777);
      // No daemon behind this socket: a sweep that got past the check would report the record as kept.
      const daemon = new DockerDaemon({ options: { socketPath: join(dir, "..", "no-daemon.sock") }, endpoint: ENDPOINT, kind: "unix" });
      const events: { type: string; message?: string }[] = [];
      const result = await sweepOrphanContainers(daemon, ledger, { image: "app:1", onEvent: (e) => events.push(e) });
      expect(result).toMatchObject({ removed: [], dropped: [], kept: [], unsafe: expect.stringContaining(dir) });
      expect(events).toHaveLength(1);
      expect(events[0]!.type).toBe("warning");
      expect(events[0]!.message).toContain(`Kiln will not use ${dir}`);
      expect(events[0]!.message).toMatch(/writable by group or others \(mode 0777\)/);
      expect(events[0]!.message).not.toContain(id(1)); // a planted record's content is never echoed
    });
  });

  it("lives beside Kiln's locks: KILN_LOCK_DIR from the given environment places it", () => {
    expect(orphanDirectory({ KILN_LOCK_DIR: "/somewhere/locks" })).toBe("/somewhere/locks/orphan-containers");
  });
});
