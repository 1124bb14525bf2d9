// The conformance suites every Kiln plugin runs: they encode what the engine relies on —
// cancellation included (an aborted check rejects, never answers; an aborted build stores nothing).
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Image } from "@kiln/core";
import { describeBuilderConformance, describeCheckerConformance } from "@kiln/core/testing";
import { toNamedChecker } from "@kiln/core/plugin";
import { expect, it } from "vitest";
import { CHECKER_NAME, MyImageBuilder, MyImageChecker, STORE_ENV, readRecord } from "../src/index.js";
import { useTempStore } from "./helpers.js";

/** A small image with a source file, so the builder has a real context to stream. */
async function sampleImage(name: string): Promise<{ image: Image; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), "kiln-my-builder-src-"));
  await writeFile(join(dir, "hello.txt"), `hello from ${name}\n`);
  const image = Image.fromBase("localhost:5000/base:1", { registry: "registry.example.test/team", name })
    .withSourceFile(join(dir, "hello.txt"), "/app/hello.txt")
    .withEnvVars({ GREETING: "hello" });
  return { image, dir };
}

// The catalogue is local files, so there is no request to leave hanging (a checker that talks to a
// service passes `hanging: (server) => ({ checker, target })` pointed at the suite's silent server).
describeCheckerConformance("MyImageChecker", {
  create: async () => {
    const store = await useTempStore();
    const { image, dir } = await sampleImage("checked");
    // Put an amd64-only image in the catalogue the way a user would: by building it.
    await new MyImageBuilder().buildImage(image, {});
    const repository = `${image.registry}/${image.name}`;
    return {
      checker: MyImageChecker,
      present: { repository, tag: image.tag, platforms: ["linux/amd64"] },
      absent: { repository, tag: "0".repeat(32), platforms: ["linux/amd64"] },
      wrongArch: { repository, tag: image.tag, platforms: ["linux/amd64", "linux/arm64"] },
      // A catalogue that cannot be read (a file where the directory should be) must throw, not answer.
      failing: () => ({
        async imageExists(repo: string, tag: string, arch?: readonly ("linux/amd64" | "linux/arm64")[]) {
          const previous = process.env[STORE_ENV];
          process.env[STORE_ENV] = join(dir, "hello.txt");
          try {
            return await MyImageChecker.imageExists(repo, tag, arch);
          } finally {
            process.env[STORE_ENV] = previous;
          }
        },
      }),
      cleanup: async () => {
        await store.cleanup();
        await rm(dir, { recursive: true, force: true });
      },
    };
  },
  // The plugin's own tests, inside the suite.
  extraTests: () => {
    it("is known to the engine by the name package.json registers it under, class form or instance", async () => {
      const manifest = JSON.parse(await readFile(new URL("../package.json", import.meta.url), "utf8")) as { kiln: { imageCheckers: Record<string, string> } };
      expect(manifest.kiln.imageCheckers[CHECKER_NAME]).toMatch(/#MyImageChecker$/);
      expect(toNamedChecker(MyImageChecker).name).toBe(CHECKER_NAME);
      expect(toNamedChecker(new MyImageChecker()).name).toBe(CHECKER_NAME);
      expect(toNamedChecker(MyImageChecker).answersFor?.("oci:/tmp/layout")).toBe(false);
    });
  },
});

describeBuilderConformance("MyImageBuilder", async () => {
  const store = await useTempStore();
  const { image, dir } = await sampleImage("built");
  return {
    builder: new MyImageBuilder(),
    image,
    exists: async (uri) => (await readRecord(`${image.registry}/${image.name}`, image.tag))?.uri === uri,
    cleanup: async () => {
      await store.cleanup();
      await rm(dir, { recursive: true, force: true });
    },
  };
});
