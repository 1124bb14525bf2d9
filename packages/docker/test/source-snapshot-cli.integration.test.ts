// Issue 12 item 1 through the real `kiln` CLI on a linked project, the real Docker Engine and a real
// registry: a source changed behind Kiln's back makes `kiln build` exit 1 and tell the user to run
// again — without pushing, and without hanging on a FIFO. The spec module installs core's testing-only
// snapshot hook (a Symbol.for key on globalThis, shared with the CLI's copy of @kiln/core).
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DockerCleanup, ensureBusyboxImage, startRegistry, uniqueName, type TestRegistry } from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { linkedKilnProject, runKiln } from "./reliability/kilnProject.js";

let busybox: string;
let registry: TestRegistry;
let project: string;
const cleanup = new DockerCleanup();

beforeAll(async () => {
  busybox = await ensureBusyboxImage();
  registry = await startRegistry({ auth: "none" });
  project = linkedKilnProject("kiln-snapshot-cli-", "snapshot-cli");
});
afterAll(async () => {
  await cleanup.run();
  await registry?.stop();
  if (project) rmSync(project, { recursive: true, force: true });
});

async function manifestStatus(repository: string, tag: string): Promise<number> {
  const res = await fetch(`${registry.url}/v2/${repository}/manifests/${tag}`, {
    method: "HEAD",
    headers: {
      accept: "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
    },
  });
  return res.status;
}

/** A spec in the project: one source folder, and `hook` (JS source) installed as the snapshot test hook. */
function specWith(file: string, hook: string): { name: string; src: string } {
  const name = uniqueName("kiln-snap-cli");
  const src = join(project, name);
  mkdirSync(src);
  writeFileSync(join(src, "main.txt"), "version one\n");
  cleanup.image(`${registry.host}/${name}:latest`); // stage images of this repository are removed too
  writeFileSync(
    join(project, file),
    [
      `import { Image } from "@kiln/core";`,
      `import { execFileSync } from "node:child_process";`,
      `import { unlinkSync, writeFileSync } from "node:fs";`,
      `const file = ${JSON.stringify(join(src, "main.txt"))};`,
      `let done = false;`,
      `globalThis[Symbol.for("kiln.testing.snapshotHooks")] = ${hook};`,
      `export default Image.fromBase(${JSON.stringify(busybox)}, { registry: ${JSON.stringify(registry.host)}, name: ${JSON.stringify(name)} }).withSourceFolder(${JSON.stringify(name)}, "/app");`,
      "",
    ].join("\n"),
  );
  return { name, src };
}

const kiln = (args: string[]) =>
  runKiln(project, args, { env: { ...process.env, KILN_LOCK_DIR: join(project, "locks"), KILN_HASH_CACHE: "off", CI: "1" }, timeoutMs: 120_000 });

describe("kiln build when a source changes during the build", () => {
  it("a file saved after the tag was computed: exit 1, 'run the build again', nothing pushed", async () => {
    const { name } = specWith(
      "saved.mjs",
      `{ beforeStreaming(paths) { if (!done && paths.some((p) => p.endsWith("/main.txt"))) { done = true; writeFileSync(file, "version TWO\\n"); } } }`,
    );
    const run = await kiln(["build", "saved.mjs", "--builder", "docker"]);
    expect(run.code, run.stderr).toBe(1);
    expect(run.stdout).toBe("");
    expect(run.stderr).toMatch(/kiln: ".*main\.txt" changed after the sources were listed \(while streaming the build context\): its content changed/);
    expect(run.stderr).toMatch(/hint: Nothing was pushed\..*run the build again/);
    const tags = await fetch(`${registry.url}/v2/${name}/tags/list`);
    expect(tags.status).toBe(404); // the repository was never pushed to
    expect(await manifestStatus(name, "latest")).toBe(404);
  });

  it("a file replaced by a FIFO after the listing: exit 1 at once instead of hanging", async () => {
    specWith("fifo.mjs", `{ afterListing() { if (!done) { done = true; unlinkSync(file); execFileSync("mkfifo", [file]); } } }`);
    const started = Date.now();
    const run = await kiln(["build", "fifo.mjs", "--builder", "docker"]);
    expect(run.code, run.stderr).toBe(1);
    expect(Date.now() - started).toBeLessThan(60_000);
    expect(run.stderr).toMatch(
      /main\.txt" changed after the sources were listed \(while hashing it for the content tag\): it is no longer a regular file \(now a FIFO\)/,
    );
    expect(run.stderr).toMatch(/run the build again/);
  });
});
