// Incremental (staged) builds on the machine's real Docker Engine: reuse, context sent, config
// equality with a one-shot build, and pruning of superseded stage tags.
import { randomBytes, createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Image } from "@kiln/core";
import { docker, DockerCleanup, ensureBusyboxImage, inspectImage, localImageExists, runInImage, uniqueName } from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DockerImageBuilder } from "../src/builder.js";
import { LABEL_STAGE, planStages, stageRepository } from "../src/incremental/stages.js";
import { collector, tempTree } from "./helpers.js";

let busybox: string;
const cleanup = new DockerCleanup();
const dirs: string[] = [];

beforeAll(async () => {
  busybox = await ensureBusyboxImage();
});

afterAll(async () => {
  await cleanup.run();
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** A folder of `count` random files of `size` bytes each. */
async function dataFolder(count: number, size: number): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "kiln-incr-data-"));
  dirs.push(dir);
  for (let i = 0; i < count; i++) await writeFile(join(dir, `part-${i}.bin`), randomBytes(size));
  return dir;
}

async function sha256Listing(dir: string): Promise<string[]> {
  const names = (await readdir(dir)).sort();
  return Promise.all(
    names.map(
      async (name) =>
        `${createHash("sha256")
          .update(await readFile(join(dir, name)))
          .digest("hex")}  ${name}`,
    ),
  );
}

/** Every stage ref the events mention (for cleanup), and the stage events of one build. */
function stageEvents(c: ReturnType<typeof collector>) {
  const events = c.of("build.stage");
  for (const e of events) cleanup.image(e.ref);
  return events;
}

describe("incremental builds (BuildKit)", () => {
  it("reuses the data stage after a source edit, sends < 1 MB, and gives the one-shot build's image config and files", async () => {
    const data = await dataFolder(10, 5 * 1024 * 1024); // 50 MB
    const src = await tempTree({ "main.txt": "version one\n", "lib/util.txt": "util\n" });
    dirs.push(src);
    const name = uniqueName("kiln-incr");
    const spec = () =>
      Image.fromBase(busybox, { name })
        .withCommands("echo dependency > /dep.txt")
        .withEnvVars({ MODE: "prod", QUOTED: 'a "b" $c' })
        .withWorkdir("/app")
        .withUser("1000:1000")
        .withSourceFolder(data, "/data")
        .withSourceFolder(src, "/app/src")
        .withLabels({ "org.example.note": "incremental" });
    const builder = new DockerImageBuilder();

    // First build: every stage is built and tagged as a labelled stage image.
    const first = spec();
    const firstUri = cleanup.image(first.uri); // an Image's tag follows its files: keep the one built
    const c1 = collector();
    await builder.buildImage(first, { onEvent: c1.onEvent });
    const firstStages = stageEvents(c1);
    expect(firstStages.map((e) => [e.stage, e.status])).toEqual([
      [0, "built"],
      [1, "built"],
      [2, "built"],
    ]);
    expect(firstStages[1]!.contextBytes).toBeGreaterThan(50 * 1024 * 1024);
    for (const e of firstStages.slice(0, 2)) {
      expect(e.ref.startsWith(`${stageRepository(name)}:`)).toBe(true);
      expect((await inspectImage(e.ref)).Config.Labels[LABEL_STAGE]).toBe("1");
    }
    expect(firstStages[2]!.ref).toBe(firstUri);

    // Edit one source file: a new content tag, the data stage reused, only the source sent.
    await writeFile(join(src, "main.txt"), "version two\n");
    const second = spec();
    expect(second.uri).not.toBe(firstUri);
    cleanup.image(second.uri);
    const c2 = collector();
    await builder.buildImage(second, { onEvent: c2.onEvent });
    const secondStages = stageEvents(c2);
    expect(secondStages.map((e) => [e.stage, e.status, e.ref])).toEqual([
      [0, "reused", firstStages[0]!.ref],
      [1, "reused", firstStages[1]!.ref],
      [2, "built", second.uri],
    ]);
    const sent = secondStages.reduce((n, e) => n + (e.contextBytes ?? 0), 0);
    expect(sent).toBeGreaterThan(0);
    expect(sent).toBeLessThan(1024 * 1024);
    // The data COPY and the RUN were not stepped through at all.
    const steps = c2.of("build.step").map((e) => e.step);
    expect(steps.some((s) => s.includes("/data"))).toBe(false);
    expect(steps.some((s) => s.includes("dependency"))).toBe(false);

    const listing = 'cat /app/src/main.txt; cat /dep.txt; pwd; id -u; echo "$MODE|$QUOTED"; cd /data && sha256sum *';
    const out = (await runInImage(second.uri, ["sh", "-c", listing])).trim().split("\n");
    expect(out.slice(0, 5)).toEqual(["version two", "dependency", "/app", "1000", 'prod|a "b" $c']);
    expect(out.slice(5)).toEqual(await sha256Listing(data));

    // The same spec built in one go: the same config and the same files.
    const oneShot = second.clone({ name: `${name}-oneshot` });
    cleanup.image(oneShot.uri);
    const c3 = collector();
    await new DockerImageBuilder({ incremental: false }).buildImage(oneShot, { onEvent: c3.onEvent });
    expect(c3.of("build.stage")).toHaveLength(0);
    const [a, b] = [(await inspectImage(second.uri)).Config, (await inspectImage(oneShot.uri)).Config];
    for (const field of ["Env", "WorkingDir", "User", "Labels", "Entrypoint", "Cmd"]) expect([field, a[field]]).toEqual([field, b[field]]);
    expect(a.Labels[LABEL_STAGE]).toBe("0");
    expect(a.Labels["org.example.note"]).toBe("incremental");
    // Modes, owners and sizes, not times: directories a step creates get the minute they were built in.
    const files = "find / -xdev -path /proc -prune -o -print | sort; find /app /data /dep.txt | sort | xargs stat -c '%n %a %u %g %s %F'";
    expect(await runInImage(second.uri, ["sh", "-c", files])).toBe(await runInImage(oneShot.uri, ["sh", "-c", files]));
  });

  it("KILN_DOCKER_INCREMENTAL=0 builds in one go", async () => {
    const src = await tempTree({ "a.txt": "a\n" });
    dirs.push(src);
    const image = Image.fromBase(busybox, { name: uniqueName("kiln-incr-off") })
      .withCommands("true")
      .withSourceFolder(src, "/src");
    cleanup.image(image.uri);
    expect(planStages(image.spec, { buildkit: true, platform: "linux/amd64" })!.stages).toHaveLength(2);
    const c = collector();
    await new DockerImageBuilder({ env: { ...process.env, KILN_DOCKER_INCREMENTAL: "0" } }).buildImage(image, { onEvent: c.onEvent });
    expect(c.of("build.stage")).toHaveLength(0);
    expect((await runInImage(image.uri, ["cat", "/src/a.txt"])).trim()).toBe("a");
  });
});

describe("incremental builds (classic builder) — pruning", () => {
  it("removes the superseded stage tags of the same name and nothing else", async () => {
    const data = await dataFolder(2, 64 * 1024);
    const src = await tempTree({ "app.txt": "app\n" });
    dirs.push(src);
    const name = uniqueName("kiln-prune");
    const spec = (word: string) =>
      Image.fromBase(busybox, { name }).withCommands(`echo ${word} > /word.txt`).withSourceFolder(data, "/data").withSourceFolder(src, "/src");
    // No grace period: the stages of v1, built a second ago, count as superseded.
    const builder = new DockerImageBuilder({ buildkit: false, stagePruneGraceMs: 0 });

    const v1 = spec("one");
    cleanup.image(v1.uri);
    const c1 = collector();
    await builder.buildImage(v1, { onEvent: c1.onEvent });
    const oldStages = stageEvents(c1)
      .filter((e) => e.ref !== v1.uri)
      .map((e) => e.ref);
    expect(oldStages).toHaveLength(2);

    // Things prune must leave alone: an unlabelled image under a stage-like tag of this name, a
    // labelled stage image of another name.
    const unlabelled = cleanup.image(`${stageRepository(name)}:${"0".repeat(32)}`);
    await docker(["tag", busybox, unlabelled]);
    const otherName = cleanup.image(`${stageRepository(`${name}-other`)}:${"1".repeat(32)}`);
    const decoyDir = await tempTree({ Dockerfile: `FROM ${busybox}\nLABEL ${LABEL_STAGE}=1\n` });
    dirs.push(decoyDir);
    await docker(["build", "-q", "-t", otherName, decoyDir]);
    await new Promise((r) => setTimeout(r, 1100)); // image Created times have 1 s resolution on some daemons

    // A changed RUN changes every stage's key: the old stage tags are superseded.
    const v2 = spec("two");
    cleanup.image(v2.uri);
    const c2 = collector();
    await builder.buildImage(v2, { onEvent: c2.onEvent });
    const newStages = stageEvents(c2).filter((e) => e.ref !== v2.uri);
    expect(newStages.map((e) => e.status)).toEqual(["built", "built"]);
    for (const ref of oldStages) expect(newStages.map((e) => e.ref)).not.toContain(ref);

    for (const ref of oldStages) expect(await localImageExists(ref)).toBe(false);
    for (const e of newStages) expect(await localImageExists(e.ref)).toBe(true);
    for (const ref of [unlabelled, otherName, v1.uri, v2.uri, busybox]) expect([ref, await localImageExists(ref)]).toEqual([ref, true]);
    expect((await runInImage(v1.uri, ["cat", "/word.txt"])).trim()).toBe("one");
    expect((await runInImage(v2.uri, ["cat", "/word.txt"])).trim()).toBe("two");
  });

  it("keeps the stages another build reused within the grace period (reuse re-tags them)", async () => {
    const data = await dataFolder(2, 16 * 1024);
    const src = await tempTree({ "app.txt": "app\n" });
    dirs.push(src);
    const name = uniqueName("kiln-prune-grace");
    const spec = (word: string) =>
      Image.fromBase(busybox, { name }).withCommands(`echo ${word} > /word.txt`).withSourceFolder(data, "/data").withSourceFolder(src, "/src");
    // Long enough for the reusing build to finish within it even on a loaded machine.
    const graceMs = 10_000;
    const builder = new DockerImageBuilder({ buildkit: false, stagePruneGraceMs: graceMs });

    const v1 = spec("one");
    cleanup.image(v1.uri);
    const c1 = collector();
    await builder.buildImage(v1, { onEvent: c1.onEvent });
    const v1Stages = stageEvents(c1)
      .filter((e) => e.ref !== v1.uri)
      .map((e) => e.ref);
    expect(v1Stages).toHaveLength(2);
    await new Promise((r) => setTimeout(r, graceMs + 500)); // v1's stages are now older than the grace period

    // Another build (think: another process) starts on v1's stages: an edit of the last stage only.
    await writeFile(join(src, "app.txt"), "app, edited\n");
    const v1b = spec("one");
    cleanup.image(v1b.uri);
    const reusedAt = Date.now();
    const c1b = collector();
    await new DockerImageBuilder({ buildkit: false, stagePruneGraceMs: graceMs }).buildImage(v1b, { onEvent: c1b.onEvent });
    const reused = stageEvents(c1b)
      .filter((e) => e.status === "reused")
      .map((e) => e.ref);
    expect(reused).toEqual(v1Stages);
    for (const ref of reused) {
      const lastTag = Date.parse((await inspectImage(ref)).Metadata?.LastTagTime ?? "");
      expect(lastTag).toBeGreaterThanOrEqual(reusedAt - 1_000);
    }

    // A build of other content now prunes what it superseded — but not the stages just reused.
    const v2 = spec("two");
    cleanup.image(v2.uri);
    const c2 = collector();
    await builder.buildImage(v2, { onEvent: c2.onEvent });
    stageEvents(c2);
    for (const ref of v1Stages) expect([ref, await localImageExists(ref)]).toEqual([ref, true]);
  });
});
