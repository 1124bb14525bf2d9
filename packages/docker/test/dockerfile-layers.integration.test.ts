// A fromDockerfile image with Kiln layers on top, built in stages on the machine's real Docker Engine:
// stage 0 is the user's Dockerfile alone (its own context, so `COPY . /ctx` sees only the user's files),
// Kiln's layers are built on it, and stage 0 is reused until the Dockerfile's context changes.
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Image } from "@kiln/core";
import { DockerCleanup, ensureBusyboxImage, inspectImage, runInImage, uniqueName } from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DockerImageBuilder } from "../src/builder.js";
import { LABEL_STAGE, stageRepository } from "../src/incremental/stages.js";
import { collector, tempTree, type Collector } from "./helpers.js";

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

/** The stage events of one build as [stage, status, ref] (every ref registered for cleanup). */
function stages(c: Collector): Array<[number, string, string]> {
  return c.of("build.stage").map((e) => {
    cleanup.image(e.ref);
    return [e.stage, e.status, e.ref];
  });
}

const REPORT = 'cd /ctx && find . | sort; echo "--"; cat /user-step.txt /app/main.txt /kiln-cmd.txt; echo "MODE=$MODE"';

describe.each([true, false])("fromDockerfile with Kiln layers, in stages (buildkit: %s)", (buildkit) => {
  it("keeps Kiln's files out of the user's build, reuses stage 0 after a Kiln source edit, rebuilds it after a context edit", async () => {
    const ctx = await tempTree({
      Dockerfile: `FROM ${busybox}\nCOPY . /ctx\nRUN echo "user-step $(cat /ctx/user.txt)" > /user-step.txt\n`,
      "user.txt": "one\n",
      ".dockerignore": "*.log\n",
      "skip.log": "ignored\n",
    });
    const src = await tempTree({ "main.txt": "kiln v1\n" });
    dirs.push(ctx, src);
    const name = uniqueName("kiln-dflayers");
    const spec = () =>
      Image.fromDockerfile(join(ctx, "Dockerfile"), { context: ctx, name })
        .withSourceFolder(src, "/app")
        .withEnvVars({ MODE: "kiln" })
        .withCommands("cp /app/main.txt /kiln-cmd.txt");
    const builder = new DockerImageBuilder({ buildkit });

    // First build: stage 0 (the user's Dockerfile) and Kiln's stage, both built.
    const first = spec();
    const firstUri = cleanup.image(first.uri); // an Image's tag follows its files: keep the one built
    const c1 = collector();
    await builder.buildImage(first, { onEvent: c1.onEvent });
    const firstStages = stages(c1);
    expect(firstStages.map(([stage, status]) => [stage, status])).toEqual([
      [0, "built"],
      [1, "built"],
    ]);
    const stage0 = firstStages[0]![2];
    expect(stage0.startsWith(`${stageRepository(name)}:`)).toBe(true);
    expect(firstStages[1]![2]).toBe(firstUri);
    expect((await inspectImage(stage0)).Config.Labels[LABEL_STAGE]).toBe("1");
    expect((await inspectImage(firstUri)).Config.Labels[LABEL_STAGE]).toBe("0");
    // `COPY . /ctx` saw exactly the user's context (its .dockerignore applied): no kiln-layers, no hidden Dockerfile.
    expect((await runInImage(firstUri, ["sh", "-c", REPORT])).trim().split("\n")).toEqual([
      ".",
      "./.dockerignore",
      "./Dockerfile",
      "./user.txt",
      "--",
      "user-step one",
      "kiln v1",
      "kiln v1",
      "MODE=kiln",
    ]);

    // A Kiln source edit: stage 0 reused (the user's RUN is not stepped through), Kiln's stage rebuilt.
    await writeFile(join(src, "main.txt"), "kiln v2\n");
    const second = spec();
    const secondUri = cleanup.image(second.uri);
    expect(secondUri).not.toBe(firstUri);
    const c2 = collector();
    await builder.buildImage(second, { onEvent: c2.onEvent });
    expect(stages(c2)).toEqual([
      [0, "reused", stage0],
      [1, "built", secondUri],
    ]);
    const steps2 = c2.of("build.step").map((e) => e.step);
    expect(steps2.some((s) => s.includes("/kiln-cmd.txt"))).toBe(true);
    expect(steps2.some((s) => s.includes("user-step") || s.includes("/ctx"))).toBe(false);
    expect((await runInImage(secondUri, ["sh", "-c", "cat /user-step.txt /app/main.txt /kiln-cmd.txt"])).trim().split("\n")).toEqual([
      "user-step one",
      "kiln v2",
      "kiln v2",
    ]);

    // A change in the user's context: stage 0 rebuilt under a new key, its RUN run again.
    await writeFile(join(ctx, "user.txt"), "two\n");
    const third = spec();
    cleanup.image(third.uri);
    const c3 = collector();
    await builder.buildImage(third, { onEvent: c3.onEvent });
    const thirdStages = stages(c3);
    expect(thirdStages.map(([stage, status]) => [stage, status])).toEqual([
      [0, "built"],
      [1, "built"],
    ]);
    expect(thirdStages[0]![2]).not.toBe(stage0);
    expect(c3.of("build.step").some((e) => e.step.includes("user-step"))).toBe(true);
    expect((await runInImage(third.uri, ["sh", "-c", "cat /ctx/user.txt /user-step.txt /app/main.txt"])).trim().split("\n")).toEqual([
      "two",
      "user-step two",
      "kiln v2",
    ]);

    // The one-shot build (incremental: false) is still today's single build, with the same image config.
    const oneShot = third.clone({ name: `${name}-oneshot` });
    cleanup.image(oneShot.uri);
    const c4 = collector();
    await new DockerImageBuilder({ buildkit, incremental: false }).buildImage(oneShot, { onEvent: c4.onEvent });
    expect(c4.of("build.stage")).toHaveLength(0);
    const [staged, whole] = [(await inspectImage(third.uri)).Config, (await inspectImage(oneShot.uri)).Config];
    for (const field of ["Env", "WorkingDir", "User", "Labels", "Entrypoint", "Cmd"]) expect([field, staged[field]]).toEqual([field, whole[field]]);
  });

  it("a target and build args reach stage 0; a Dockerfile outside the context never brings kiln-layers", async () => {
    const ctx = await tempTree({ "app.txt": "a\n" });
    const elsewhere = await tempTree({
      "build.Dockerfile": `FROM ${busybox} AS first\nARG WORD=plain\nCOPY . /ctx\nRUN echo "$WORD" > /word.txt\nFROM first AS unused\nRUN false\n`,
    });
    const src = await tempTree({ "k.txt": "k\n" });
    dirs.push(ctx, elsewhere, src);
    const image = Image.fromDockerfile(join(elsewhere, "build.Dockerfile"), {
      context: ctx,
      name: uniqueName("kiln-dflayers"),
      target: "first",
      buildArgs: { WORD: "spicy" },
    })
      .withSourceFile(join(src, "k.txt"), "/k.txt")
      .withUser("1000:1000");
    cleanup.image(image.uri);
    const c = collector();
    await new DockerImageBuilder({ buildkit }).buildImage(image, { onEvent: c.onEvent });
    expect(stages(c).map(([stage, status]) => [stage, status])).toEqual([
      [0, "built"],
      [1, "built"],
    ]);
    const out = (await runInImage(image.uri, ["sh", "-c", "cd /ctx && find . | sort; cat /word.txt /k.txt; id -u"])).trim().split("\n");
    // BuildKit gets the context and the Dockerfile through the session (remote=client-session), as the
    // docker CLI sends them: exactly the context, nothing added. The classic builder gets a tar with
    // the Dockerfile hidden by an added .dockerignore, which it drops after reading (the .dockerignore
    // itself stays, as with the docker CLI).
    expect(out).toEqual([".", ...(buildkit ? [] : ["./.dockerignore"]), "./app.txt", "spicy", "k", "1000"]);
  });
});
