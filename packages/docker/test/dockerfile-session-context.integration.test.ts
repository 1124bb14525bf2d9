// Issue 14 on the machine's real Docker Engine: with BuildKit, a fromDockerfile image whose Dockerfile
// Kiln cannot use in place (outside its context, or excluded by the context's .dockerignore) is built
// with its context served through the session (`remote=client-session`), as the docker CLI does — so
// no hidden `.dockerfile.kiln` (BuildKit through the Engine API does not re-apply .dockerignore to an
// uploaded tar) and no Dockerfile reaches a `COPY . /app`. The files served are the pinned snapshot's,
// each checked against its digest.
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Image, pinSources, SourceChangedError } from "@kiln/core";
import { DockerCleanup, ensureBusyboxImage, runInImage, uniqueName } from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DockerImageBuilder } from "../src/builder.js";
import { tempTree } from "./helpers.js";

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

async function tree(files: Record<string, string>): Promise<string> {
  const dir = await tempTree(files, "kiln-session-ctx-");
  dirs.push(dir);
  return dir;
}

/** Builds `image` with BuildKit (incremental by default) and lists its /app. */
async function appListing(image: Image, options: { incremental?: boolean } = {}): Promise<string[]> {
  const { uri } = await new DockerImageBuilder({ buildkit: true, ...options }).buildImage(image, {});
  cleanup.image(uri!);
  return (await runInImage(uri!, ["ls", "-a1", "/app"])).trim().split("\n");
}

describe("BuildKit: a fromDockerfile context served through the session (remote=client-session)", () => {
  it("a Dockerfile outside the context: COPY . /app has neither .dockerfile.kiln nor the Dockerfile", async () => {
    const ctx = await tree({ "app.txt": "a", ".dockerignore": "*.log\n", "skip.log": "x", "sub/b.txt": "b" });
    const elsewhere = await tree({ "build.Dockerfile": `FROM ${busybox}\nCOPY . /app\n` });
    const image = Image.fromDockerfile(join(elsewhere, "build.Dockerfile"), { context: ctx, name: uniqueName("kiln-sessctx") });
    expect(await appListing(image)).toEqual([".", "..", ".dockerignore", "app.txt", "sub"]);
  });

  it("a Dockerfile excluded by the context's .dockerignore: COPY . /app has neither .dockerfile.kiln nor the Dockerfile", async () => {
    const ctx = await tree({ "app.txt": "a", ".dockerignore": "Dockerfile\n", Dockerfile: `FROM ${busybox}\nCOPY . /app\n` });
    const image = Image.fromDockerfile(join(ctx, "Dockerfile"), { context: ctx, name: uniqueName("kiln-sessctx") });
    expect(await appListing(image)).toEqual([".", "..", ".dockerignore", "app.txt"]);
  });

  it("with Kiln layers on top (the user's Dockerfile as stage 0, in stages and in one go): no hidden Dockerfile in /app", async () => {
    const ctx = await tree({ "app.txt": "a" });
    const elsewhere = await tree({ "build.Dockerfile": `FROM ${busybox}\nCOPY . /app\n` });
    const image = Image.fromDockerfile(join(elsewhere, "build.Dockerfile"), { context: ctx, name: uniqueName("kiln-sessctx") }).withCommands(
      "echo layered > /layered.txt",
    );
    expect(await appListing(image, { incremental: true })).toEqual([".", "..", "app.txt"]);
    // In one go the rendered Dockerfile (kiln-layers/Dockerfile) is hidden the same way; Kiln's layer
    // files sit under kiln-layers/ in that context, the user's `COPY .` included (as before).
    const oneShot = await appListing(image.clone({ name: uniqueName("kiln-sessctx") }), { incremental: false });
    expect(oneShot.filter((name) => name.startsWith(".dockerfile") || name === "Dockerfile")).toEqual([]);
    expect(oneShot).toContain("app.txt");
  });

  it("a context file changed after the tag was computed fails with SourceChangedError; rebuilt from the current files, /app is clean", async () => {
    const ctx = await tree({ "app.txt": "version one\n" });
    const elsewhere = await tree({ "build.Dockerfile": `FROM ${busybox}\nCOPY . /app\n` });
    const image = Image.fromDockerfile(join(elsewhere, "build.Dockerfile"), { context: ctx, name: uniqueName("kiln-sessctx") });
    const pinned = pinSources(image); // the tag and the digests are taken now
    cleanup.image(pinned.uri);
    await writeFile(join(ctx, "app.txt"), "version TWO\n"); // same size, other bytes
    const error = await new DockerImageBuilder({ buildkit: true }).buildImage(pinned, {}).then(
      () => expect.unreachable("the build succeeded"),
      (e: unknown) => e,
    );
    expect(SourceChangedError.isInstance(error), String(error)).toBe(true);
    expect((error as Error).message).toContain(JSON.stringify(join(ctx, "app.txt")));

    expect(await appListing(image.clone())).toEqual([".", "..", "app.txt"]);
  });
});
