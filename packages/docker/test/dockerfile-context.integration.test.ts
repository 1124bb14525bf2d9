// A fromDockerfile image must reach the engine exactly as `docker build -f <file> <context>` sends it:
// a `COPY . /ctx` sees the user's context (filtered by its .dockerignore) and nothing Kiln added.
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Image } from "@kiln/core";
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

async function contextListing(image: Image, buildkit: boolean): Promise<string[]> {
  const { uri } = await new DockerImageBuilder({ buildkit }).buildImage(image, {});
  cleanup.image(uri!);
  const out = await runInImage(uri!, ["sh", "-c", "cd /ctx && find . | sort"]);
  return out.trim().split("\n");
}

describe.each([true, false])("fromDockerfile context (buildkit: %s)", (buildkit) => {
  it("a Dockerfile inside the context is used in place; COPY . sees exactly the user's files", async () => {
    const ctx = await tempTree({
      "app.txt": "a",
      "skip.log": "x",
      ".dockerignore": "*.log\n",
      "docker/Dockerfile": `FROM ${busybox}\nCOPY . /ctx\n`,
    });
    dirs.push(ctx);
    const image = Image.fromDockerfile(join(ctx, "docker/Dockerfile"), { context: ctx, name: uniqueName("kiln-dfctx") });
    expect(await contextListing(image, buildkit)).toEqual([".", "./.dockerignore", "./app.txt", "./docker", "./docker/Dockerfile"]);
  });

  it("a Dockerfile outside the context is sent hidden and ignored, as the docker CLI does", async () => {
    const ctx = await tempTree({ "app.txt": "a", ".dockerignore": "*.log\n", "skip.log": "x" });
    const elsewhere = await tempTree({});
    dirs.push(ctx, elsewhere);
    const dockerfile = join(elsewhere, "build.Dockerfile");
    await writeFile(dockerfile, `FROM ${busybox}\nCOPY . /ctx\n`);
    const image = Image.fromDockerfile(dockerfile, { context: ctx, name: uniqueName("kiln-dfctx") });
    const listing = await contextListing(image, buildkit);
    // The classic builder drops files the context's .dockerignore names after reading the Dockerfile;
    // with BuildKit the context goes through the session (remote=client-session) without it.
    expect(listing).toEqual([".", "./.dockerignore", "./app.txt"]);
  });
});
