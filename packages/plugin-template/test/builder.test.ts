// MyImageBuilder's own behaviour beyond the conformance suite: the options the guide names
// (dryRun, wait, force), events, cancellation and what a build leaves in the catalogue.
import { mkdir, readFile, readdir, rm, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { build, CancelledError, Image, LeaseLostError, type BuildEvent } from "@kiln/core";
import { repositoryOf } from "@kiln/core/plugin";
import { CHECKER_NAME, MyImageBuilder, MyImageChecker, readRecord } from "../src/index.js";
import { useTempStore } from "./helpers.js";

let store: Awaited<ReturnType<typeof useTempStore>>;
let srcDir: string;
let image: Image;

beforeEach(async () => {
  store = await useTempStore();
  srcDir = await mkdtemp(join(tmpdir(), "kiln-my-builder-src-"));
  await writeFile(join(srcDir, "app.txt"), "version 1\n");
  image = Image.fromBase("localhost:5000/base:1", { registry: "localhost:5000", name: "team/app" }).withSourceFile(join(srcDir, "app.txt"), "/app/app.txt");
});

afterEach(async () => {
  await store.cleanup();
  await rm(srcDir, { recursive: true, force: true });
});

describe("MyImageBuilder", () => {
  it("dryRun returns the URI and writes nothing", async () => {
    const result = await new MyImageBuilder().buildImage(image, { dryRun: true });
    expect(result.uri).toBe(image.uri);
    expect(await readdir(store.dir)).toEqual([]);
    expect(await MyImageChecker.imageExists(repositoryOf(image), image.tag)).toBeNull();
  });

  it("stores the rendered Dockerfile and the streamed context, and reports steps and the digest", async () => {
    const events: BuildEvent[] = [];
    const result = await new MyImageBuilder().buildImage(image, { onEvent: (e) => events.push(e) });
    const record = await readRecord(repositoryOf(image), image.tag);
    expect(record).not.toBeNull();
    expect(result).toEqual({ uri: image.uri, digest: record!.digest });
    expect(record!.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    const dockerfile = await readFile(join(record!.artifactDir, "Dockerfile"), "utf8");
    expect(dockerfile).toContain("FROM localhost:5000/base:1");
    const context = await readFile(join(record!.artifactDir, "context.tar"));
    expect(context.includes(Buffer.from("version 1\n"))).toBe(true);
    expect(events.filter((e) => e.type === "build.step").map((e) => (e as { step: string }).step)).toEqual([
      "render Dockerfile",
      "stream build context",
      "record in catalogue",
    ]);
    expect(events.find((e) => e.type === "push.done")).toMatchObject({ digest: record!.digest, image: image.uri });
  });

  it("without force does not rebuild what the catalogue holds; with force it does", async () => {
    const builder = new MyImageBuilder();
    await builder.buildImage(image, {});
    const first = await readRecord(repositoryOf(image), image.tag);
    await builder.buildImage(image, {});
    expect((await readRecord(repositoryOf(image), image.tag))!.artifactDir).toBe(first!.artifactDir);
    await builder.buildImage(image, { force: true });
    const forced = await readRecord(repositoryOf(image), image.tag);
    expect(forced!.artifactDir).not.toBe(first!.artifactDir);
    expect(forced!.digest).toBe(first!.digest); // same inputs, same content
  });

  it("wait: false returns at once with a handle whose wait() finishes the build", async () => {
    const result = await new MyImageBuilder().buildImage(image, { wait: false });
    expect(result.uri).toBe(image.uri);
    expect(result.remoteRun).toMatchObject({ id: expect.any(String) });
    const finished = await result.wait!();
    expect(finished.digest).toMatch(/^sha256:/);
    expect(await MyImageChecker.imageExists(repositoryOf(image), image.tag)).toBe(image.uri);
  });

  it("an aborted signal cancels the build and records nothing", async () => {
    const controller = new AbortController();
    controller.abort(new Error("user pressed ctrl-c"));
    await expect(new MyImageBuilder().buildImage(image, { signal: controller.signal })).rejects.toThrow();
    expect(await readRecord(repositoryOf(image), image.tag)).toBeNull();
  });

  it("aborting mid-build removes the build's artifact directory (no builds/* left)", async () => {
    const controller = new AbortController();
    const steps: string[] = [];
    const building = new MyImageBuilder().buildImage(image, {
      signal: controller.signal,
      onEvent: (e) => {
        if (e.type !== "build.step") return;
        steps.push(e.step);
        // Abort once the Dockerfile is written and the context is about to stream.
        if (e.step === "stream build context") controller.abort(new Error("user pressed ctrl-c"));
      },
    });
    await expect(building).rejects.toSatisfy((e) => CancelledError.isInstance(e));
    expect(steps).toEqual(["render Dockerfile", "stream build context"]);
    expect(await readdir(join(store.dir, "builds"))).toEqual([]);
    expect(await readRecord(repositoryOf(image), image.tag)).toBeNull();
  });

  it("a failing catalogue write leaves no .tmp file and no builds/* directory", async () => {
    const builder = new MyImageBuilder();
    await builder.buildImage(image, {});
    const [recordFile] = await readdir(join(store.dir, "images"));
    const [firstBuild] = await readdir(join(store.dir, "builds"));
    // A directory where the record file goes: the temp file is written, then the rename fails.
    await rm(join(store.dir, "images", recordFile!));
    await mkdir(join(store.dir, "images", recordFile!));
    await expect(builder.buildImage(image, { force: true })).rejects.toMatchObject({ code: expect.stringMatching(/^E/) });
    expect(await readdir(join(store.dir, "images"))).toEqual([recordFile]);
    expect(await readdir(join(store.dir, "builds"))).toEqual([firstBuild]);
  });

  it("calls beforePush right before recording (its push); when it rejects nothing is recorded and no builds/* left", async () => {
    const steps: string[] = [];
    const calls: string[][] = [];
    const lost = new LeaseLostError("The build lease was lost before the push");
    const refused = new MyImageBuilder().buildImage(image, {
      onEvent: (e) => void (e.type === "build.step" && steps.push(e.step)),
      beforePush: async () => {
        calls.push([...steps]);
        throw lost;
      },
    });
    await expect(refused).rejects.toBe(lost);
    expect(calls).toEqual([["render Dockerfile", "stream build context", "record in catalogue"]]);
    expect(await readRecord(repositoryOf(image), image.tag)).toBeNull();
    expect(await readdir(join(store.dir, "builds"))).toEqual([]);

    let confirmed = 0;
    const result = await new MyImageBuilder().buildImage(image, { beforePush: async () => void confirmed++ });
    expect(confirmed).toBe(1);
    expect(await readRecord(repositoryOf(image), image.tag)).toMatchObject({ digest: result.digest });
  });

  it("records the image's platforms; the checker answers per platform", async () => {
    const multi = image.clone({ platform: ["linux/amd64", "linux/arm64"] });
    await new MyImageBuilder().buildImage(multi, {});
    expect(await MyImageChecker.imageExists(repositoryOf(multi), multi.tag, ["linux/arm64"])).toBe(multi.uri);
    expect(await MyImageChecker.imageExists(repositoryOf(multi), multi.tag, ["linux/amd64", "linux/arm64"])).toBe(multi.uri);
    expect(await MyImageChecker.imageExists(repositoryOf(image), image.tag, ["linux/amd64"])).toBeNull();
  });
});

describe("through the engine", () => {
  it("builds once, then its checker finds the image; dryRun never calls the builder", async () => {
    const builder = new MyImageBuilder();
    const changed = image.withEnvVars({ RELEASE: "2" });
    const dry = await build(changed, { builder, dryRun: true });
    expect(dry).toMatchObject({ outcome: "would-build", uri: changed.uri });
    expect(await readRecord(repositoryOf(changed), changed.tag)).toBeNull();

    const first = await build(changed, { builder });
    expect(first.outcome).toBe("built");
    const second = await build(changed, { builder });
    expect(second).toMatchObject({ outcome: "found", foundBy: CHECKER_NAME, uri: changed.uri }); // its registered name
  });

  it("aborting mid-build cancels it: a CancelledError, and nothing recorded", async () => {
    const controller = new AbortController();
    const build$ = build(image, {
      builder: new MyImageBuilder(),
      signal: controller.signal,
      onEvent: (e) => {
        if (e.type === "build.step") controller.abort(new Error("user pressed ctrl-c"));
      },
    });
    await expect(build$).rejects.toSatisfy((e) => CancelledError.isInstance(e));
    expect(await readRecord(repositoryOf(image), image.tag)).toBeNull();
  });
});
