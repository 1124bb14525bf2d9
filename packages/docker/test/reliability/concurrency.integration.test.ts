/**
 * Concurrency: 50 concurrent `build()` calls over 10 distinct images build each image exactly once —
 * with a counting in-process builder, and with the real Docker builder pushing to a real registry
 * (checked afterwards by digest) — and 3 concurrent `kiln build` processes on one image build it once
 * and all print the same URI and digest.
 */
import type { ChildProcess } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { build, Image, init, RegistryClient, type BuildImageOptions, type ImageBuild, type ImageBuilder } from "@kiln/core";
import { DockerCleanup, ensureBusyboxImage, startRegistry, uniqueName, type TestRegistry } from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DockerImageBuilder } from "../../src/builder.js";
import { linkedKilnProject, runKiln, type CliRun } from "./kilnProject.js";

let busybox: string;
let registry: TestRegistry;
let project: string;
const cleanup = new DockerCleanup();

beforeAll(async () => {
  busybox = await ensureBusyboxImage();
  registry = await startRegistry();
  // A user project that installs @kiln/core and @kiln/docker (linked, as a workspace would).
  project = linkedKilnProject("kiln-rel-conc-", "rel-app");
  mkdirSync(join(project, "locks"));
  process.env.KILN_LOCK_DIR = join(project, "locks");
  init({ projectDir: project });
});
afterAll(async () => {
  await cleanup.run();
  await registry?.stop();
  if (project) rmSync(project, { recursive: true, force: true });
});

/** Delegates to `inner` and counts the builds it was asked for, per image URI. */
class CountingBuilder implements ImageBuilder {
  readonly calls = new Map<string, number>();
  constructor(private readonly inner?: ImageBuilder) {}
  getCheckers() {
    return this.inner?.getCheckers?.() ?? [];
  }
  async buildImage(image: Image, options: BuildImageOptions): Promise<ImageBuild> {
    this.calls.set(image.uri, (this.calls.get(image.uri) ?? 0) + 1);
    if (this.inner) return this.inner.buildImage(image, options);
    await new Promise((r) => setTimeout(r, 200));
    return { uri: image.uri, digest: `sha256:${"0".repeat(64)}` };
  }
}

const tenImages = (prefix: string, host: string) =>
  Array.from({ length: 10 }, (_, i) => Image.fromBase(busybox, { registry: host, name: `${prefix}-${i}` }).withCommands(`echo ${prefix} ${i} > /n.txt`));

describe("50 concurrent build() calls over 10 images", () => {
  it("in-process counting builder: exactly 10 builder invocations, each caller gets its image's result", async () => {
    const builder = new CountingBuilder();
    const images = tenImages(uniqueName("kiln-rel-count"), "registry.invalid:5000");
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => build(images[i % 10]!, { builder })));
    expect([...builder.calls.values()].reduce((a, b) => a + b, 0)).toBe(10);
    expect(new Set(builder.calls.keys())).toEqual(new Set(images.map((i) => i.uri)));
    results.forEach((r, i) => expect(r.uri).toBe(images[i % 10]!.uri));
  });

  it("real Docker builder + registry: 10 builds, and the registry holds every image under the digest each caller got", async () => {
    const builder = new CountingBuilder(new DockerImageBuilder({ buildkit: false, env: { ...process.env, DOCKER_CONFIG: "/nonexistent" } }));
    const images = tenImages(uniqueName("kiln-rel-real"), registry.host);
    images.forEach((i) => cleanup.image(i.uri));
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => build(images[i % 10]!, { builder })));
    expect([...builder.calls.values()]).toEqual(Array(10).fill(1));
    const client = new RegistryClient({ useDockerConfig: false });
    for (const [i, image] of images.entries()) {
      const head = await client.headManifest(image.uri);
      expect(head?.digest).toMatch(/^sha256:/);
      for (let k = i; k < 50; k += 10) expect(results[k]!.digest).toBe(head!.digest);
    }
  }, 240_000);
});

describe("3 concurrent `kiln build` processes on one image", () => {
  function kiln(args: string[], env: Record<string, string>, onStderr?: (text: string, child: ChildProcess) => void): Promise<CliRun> {
    return runKiln(project, args, { env: { ...process.env, ...env }, timeoutMs: 150_000, onStderr });
  }

  it("one build; all three print the same URI and report the same digest (the one the registry holds)", async () => {
    const name = uniqueName("kiln-rel-cli");
    writeFileSync(
      join(project, "spec.mjs"),
      `import { Image } from "@kiln/core";\nexport default Image.fromBase(${JSON.stringify(busybox)}, { registry: process.env.TEST_REGISTRY, name: ${JSON.stringify(name)} }).withCommands("echo cli > /c.txt && sleep 2");\n`,
    );
    const env = { TEST_REGISTRY: registry.host, DOCKER_CONFIG: "/nonexistent", DOCKER_BUILDKIT: "0" };
    const runs = await Promise.all([1, 2, 3].map(() => kiln(["build", "spec.mjs", "--json"], env)));
    for (const run of runs) expect(run.code, run.stderr).toBe(0);
    const uris = runs.map((r) => r.stdout.trim());
    expect(new Set(uris).size).toBe(1);
    cleanup.image(uris[0]!);
    const events = runs.map((r) =>
      r.stderr
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as { type: string; built?: boolean; digest?: string; dryRun?: boolean }),
    );
    const builds = events.flat().filter((e) => e.type === "build.start" && !e.dryRun).length;
    expect(builds).toBe(1);
    const done = events.map((list) => list.find((e) => e.type === "done")!);
    expect(done.filter((d) => d.built)).toHaveLength(1);
    const head = await new RegistryClient({ useDockerConfig: false }).headManifest(uris[0]!);
    const digests = done.map((d) => d.digest);
    // The builder reports the pushed digest; the two that found the image resolve it from the registry:
    // all three report the very digest the registry holds.
    expect(head?.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(digests).toEqual([head!.digest, head!.digest, head!.digest]);
    console.info(`[reliability] 3 CLI processes: builds=${builds} digests reported=${digests.filter(Boolean).length}/3`);
  }, 200_000);

  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    it(`${signal} while the engine runs a slow RUN step: exit 130 within seconds, no URI, nothing pushed, no lock left`, async () => {
      const name = uniqueName("kiln-rel-sig");
      writeFileSync(
        join(project, "slow.mjs"),
        `import { Image } from "@kiln/core";\nexport default Image.fromBase(${JSON.stringify(busybox)}, { registry: process.env.TEST_REGISTRY, name: ${JSON.stringify(name)} }).withCommands("echo slow-start && sleep 60");\n`,
      );
      let sentAt = 0;
      const run = await kiln(
        ["build", "slow.mjs", "--json"],
        { TEST_REGISTRY: registry.host, DOCKER_CONFIG: "/nonexistent", DOCKER_BUILDKIT: "0" },
        (text, child) => {
          if (!sentAt && text.includes("slow-start")) {
            sentAt = Date.now();
            child.kill(signal);
          }
        },
      );
      expect(sentAt).toBeGreaterThan(0);
      expect(run.code, run.stderr.slice(-500)).toBe(130);
      expect(Date.now() - sentAt).toBeLessThan(10_000);
      expect(run.stdout).toBe("");
      expect(run.stderr).toContain("KILN_CANCELLED");
      const { readdirSync } = await import("node:fs");
      expect(readdirSync(join(project, "locks")).filter((f) => f.endsWith(".lock"))).toEqual([]);
      const tags = await fetch(`${registry.url}/v2/${name}/tags/list`).then((r) => r.status);
      expect(tags).toBe(404); // the repository was never created: nothing half-pushed
    }, 60_000);
  }
});
