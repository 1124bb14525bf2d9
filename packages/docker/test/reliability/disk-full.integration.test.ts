/**
 * Disk full in the temp area: a 64 KiB tmpfs, filled to the last block, holds the lock directory,
 * TMPDIR and XDG_CACHE_HOME. A build (in-process and through the CLI) must fail with a typed error
 * and a hint — not a raw ENOSPC — and leave no partial file behind (only the filler remains).
 * Needs root for `mount -t tmpfs` (the CI container runs as root); unmounted afterwards.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, rmdirSync, rmSync, statSync, writeFileSync, openSync, writeSync, closeSync } from "node:fs";
import { join } from "node:path";
import { build, Image, KilnError } from "@kiln/core";
import { ensureBusyboxImage, startRegistry, uniqueName, type TestRegistry } from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DockerImageBuilder } from "../../src/builder.js";
import { linkedKilnProject, runKiln } from "./kilnProject.js";

let busybox: string;
let registry: TestRegistry;
let project: string;
let full: string;
let mounted = false;

/** Every regular file under `dir`, relative. */
function filesUnder(dir: string, prefix = ""): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? filesUnder(join(dir, e.name), `${prefix}${e.name}/`) : [`${prefix}${e.name}`],
  );
}

beforeAll(async () => {
  busybox = await ensureBusyboxImage();
  registry = await startRegistry();
  project = linkedKilnProject("kiln-rel-enospc-", "enospc-app");
  writeFileSync(join(project, "app.txt"), "source\n");
  full = join(project, "full");
  mkdirSync(full);
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", full]);
  mounted = true;
  for (const d of ["locks", "tmp", "cache"]) mkdirSync(join(full, d));
  // Fill every block.
  const fd = openSync(join(full, "filler"), "w");
  try {
    const block = Buffer.alloc(4096, 1);
    for (;;) writeSync(fd, block);
  } catch (error) {
    expect((error as NodeJS.ErrnoException).code).toBe("ENOSPC");
  } finally {
    closeSync(fd);
  }
}, 60_000);

afterAll(async () => {
  if (mounted) execFileSync("umount", [full]);
  if (full) rmdirSync(full);
  await registry?.stop();
  if (project) rmSync(project, { recursive: true, force: true });
});

describe("ENOSPC in the temp area", () => {
  it("in-process build: a typed error with a hint, no partial lock file", async () => {
    const saved = process.env.KILN_LOCK_DIR;
    process.env.KILN_LOCK_DIR = join(full, "locks");
    try {
      const image = Image.fromBase(busybox, { registry: registry.host, name: uniqueName("kiln-rel-enospc") }).withCommands("echo x > /x");
      const started = Date.now();
      const error = await build(image, {
        builder: new DockerImageBuilder({ buildkit: false, env: { ...process.env, DOCKER_CONFIG: "/nonexistent" } }),
        projectDir: project,
      }).catch((e: unknown) => e);
      expect(KilnError.isInstance(error), String(error)).toBe(true);
      expect((error as KilnError).code).toBe("KILN_BUILD_FAILED");
      expect((error as KilnError).message).toMatch(/no space left.*ENOSPC/);
      expect((error as KilnError).hint).toMatch(/KILN_LOCK_DIR/);
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(filesUnder(full)).toEqual(["filler"]);
    } finally {
      if (saved === undefined) delete process.env.KILN_LOCK_DIR;
      else process.env.KILN_LOCK_DIR = saved;
    }
  });

  it("CLI with TMPDIR and XDG_CACHE_HOME on the full disk: exit 1, KILN_BUILD_FAILED + hint, nothing on stdout, no partial files", async () => {
    writeFileSync(
      join(project, "spec.mjs"),
      `import { Image } from "@kiln/core";\nexport default Image.fromBase(${JSON.stringify(busybox)}, { registry: ${JSON.stringify(registry.host)}, name: ${JSON.stringify(uniqueName("kiln-rel-enospc-cli"))} }).withSourceFile("app.txt", "/app.txt");\n`,
    );
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      TMPDIR: join(full, "tmp"),
      XDG_CACHE_HOME: join(full, "cache"),
      DOCKER_CONFIG: "/nonexistent",
      DOCKER_BUILDKIT: "0",
    };
    delete env.KILN_LOCK_DIR;
    delete env.XDG_RUNTIME_DIR;
    const run = await runKiln(project, ["build", "spec.mjs", "--json"], { env, timeoutMs: 60_000 });
    expect(run.code, run.stderr).toBe(1);
    expect(run.stdout).toBe("");
    expect(run.stderr).toContain("KILN_BUILD_FAILED");
    expect(run.stderr).toMatch(/^kiln: Cannot take the build lock .* no space left/m);
    expect(run.stderr).toMatch(/^hint: Free some space/m);
    expect(filesUnder(full)).toEqual(["filler"]);
    expect(statSync(join(full, "filler")).size).toBeGreaterThan(0);
  }, 90_000);
});
