/**
 * The Docker Engine's embedded BuildKit through the Engine API's `/grpc` (the default endpoint; runs
 * everywhere the Docker tests run): the context and the Dockerfile as two session local sources,
 * secrets, progress, a failing step, cancellation, the base-platform check, an incremental re-send
 * after a one-file edit, pushes to loopback registries in three auth modes, and core's builder
 * conformance suite.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { BuildFailedError, CancelledError, DaemonUnavailableError, Image, pinSources, RegistryClient, SourceChangedError, type BuildEvent } from "@kiln/core";
import { describeBuilderConformance } from "@kiln/core/testing";
import {
  DockerCleanup,
  ensureBusyboxImage,
  localImageExists,
  runInImage,
  startRegistry,
  startSshDockerHost,
  uniqueName,
  type TestRegistry,
} from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BuildKitImageBuilder } from "../src/builder.js";
import { BuildKitClient } from "../src/client.js";
import { parseEndpoint } from "../src/endpoints.js";
import { solveImage } from "../src/solveImage.js";
import { collector, dockerConfigWith, tempTree } from "./helpers.js";

const execFileAsync = promisify(execFile);
const cleanup = new DockerCleanup();
const dirs: string[] = [];
const registries: TestRegistry[] = [];
let busybox: string;

beforeAll(async () => {
  busybox = await ensureBusyboxImage();
});
afterAll(async () => {
  await cleanup.run();
  await Promise.all([...registries.map((r) => r.stop()), ...dirs.map((d) => rm(d, { recursive: true, force: true }))]);
});

async function tree(files: Record<string, string>): Promise<string> {
  const dir = await tempTree(files);
  dirs.push(dir);
  return dir;
}

describe("BuildKit through the Docker Engine's /grpc", () => {
  it("ListWorkers answers and Info is feature-detected (the engine's BuildKit has none)", async () => {
    const client = await BuildKitClient.connect(parseEndpoint({ host: "docker-engine" }));
    try {
      expect(client.workers.length).toBeGreaterThan(0);
      expect(client.platforms).toContain("linux/amd64");
      expect(await client.hasInfo()).toBe(false);
    } finally {
      client.close();
    }
  });

  it("builds a Kiln image from the context and Dockerfile local sources; steps and logs arrive as events", async () => {
    // Unique content: a step cached from an earlier run prints no log.
    const beta = uniqueName("beta");
    const src = await tree({ "a.txt": "alpha\n", "sub/b.txt": `${beta}\n`, "skip.log": "no\n", ".dockerignore": "*.log\n" });
    const image = Image.fromBase(busybox, { name: uniqueName("kiln-bk-engine") })
      .withSourceFolder(src, "/app")
      .withCommands("cat /app/a.txt /app/sub/b.txt && ls -a /app > /listing.txt");
    cleanup.image(image.uri);
    const c = collector();
    const result = await new BuildKitImageBuilder().buildImage(image, { onEvent: c.onEvent });
    expect(result.uri).toBe(image.uri);
    expect(c.of("build.step").map((e) => e.step)).toEqual(expect.arrayContaining([expect.stringContaining("COPY"), expect.stringContaining("RUN")]));
    expect(c.of("build.log").some((e) => e.line === beta)).toBe(true);
    const listing = (await runInImage(image.uri, ["cat", "/listing.txt"])).split("\n").filter(Boolean);
    // Exactly the listed files: the .dockerignore'd log is not there, nor any Dockerfile.
    expect(listing.sort()).toEqual([".", "..", ".dockerignore", "a.txt", "sub"]);
  });

  it("fromDockerfile with the Dockerfile outside its context: `COPY .` gets no hidden Dockerfile, and .dockerignore rules hold", async () => {
    const context = await tree({ "app.txt": "app\n", "secret.env": "X=1\n", ".dockerignore": "secret.env\nDockerfile\n", Dockerfile: "FROM scratch\n" });
    const elsewhere = await tree({ "build.Dockerfile": `FROM ${busybox}\nCOPY . /ctx\nRUN ls -a /ctx > /ctx-listing.txt\n` });
    const image = Image.fromDockerfile(join(elsewhere, "build.Dockerfile"), { context, name: uniqueName("kiln-bk-dockerfile") });
    cleanup.image(image.uri);
    await new BuildKitImageBuilder().buildImage(image, {});
    const listing = (await runInImage(image.uri, ["cat", "/ctx-listing.txt"])).split("\n").filter(Boolean).sort();
    expect(listing).toEqual([".", "..", ".dockerignore", "app.txt"]);
  });

  it("an ssh:// DOCKER_HOST: /grpc and /session go through `docker system dial-stdio`; `COPY .` gets no hidden Dockerfile", async () => {
    const ssh = await startSshDockerHost();
    try {
      const context = await tree({ "app.txt": "app\n", ".dockerignore": "Dockerfile\n", Dockerfile: "FROM scratch\n" });
      const elsewhere = await tree({ "build.Dockerfile": `FROM ${busybox}\nCOPY . /ctx\nRUN ls -a /ctx > /ctx-listing.txt\n` });
      const image = Image.fromDockerfile(join(elsewhere, "build.Dockerfile"), { context, name: uniqueName("kiln-bk-ssh") });
      cleanup.image(image.uri);
      await new BuildKitImageBuilder({ env: { ...process.env, ...ssh.env }, endpoints: ["docker-engine"] }).buildImage(image, {});
      const listing = (await runInImage(image.uri, ["cat", "/ctx-listing.txt"])).split("\n").filter(Boolean).sort();
      expect(listing).toEqual([".", "..", ".dockerignore", "app.txt"]);
      expect(
        ssh.requests
          .filter((line) => /^POST \/(grpc|session) /.test(line))
          .map((line) => line.split(" ")[1])
          .sort(),
      ).toEqual(["/grpc", "/session"]);
    } finally {
      await ssh.stop();
    }
  });

  it("serves build secrets through the session (the step reads it; no event holds it)", async () => {
    const value = `bk-secret-${Date.now()}`;
    const sha = createHash("sha256").update(value).digest("hex");
    const image = Image.fromBase(busybox, { name: uniqueName("kiln-bk-secret") }).withCommands(
      `test "$(sha256sum < /run/secrets/TOKEN | cut -d' ' -f1)" = "${sha}" && echo "got $(cat /run/secrets/TOKEN)" && touch /ok`,
      { secrets: ["TOKEN"] },
    );
    cleanup.image(image.uri);
    const c = collector();
    await new BuildKitImageBuilder().buildImage(image, { secrets: { TOKEN: value }, onEvent: c.onEvent });
    expect(JSON.stringify(c.events)).not.toContain(value);
    expect(c.of("build.log").some((e) => e.line.includes("got ***"))).toBe(true);
    expect((await runInImage(image.uri, ["ls", "/ok"])).trim()).toBe("/ok");
  });

  it("a failing step: BuildFailedError with the step and its log tail", async () => {
    const image = Image.fromBase(busybox, { name: uniqueName("kiln-bk-engine-fail") }).withCommands(
      "echo engine-fail-line-1 && echo engine-fail-line-2 && exit 3",
    );
    const error = await new BuildKitImageBuilder().buildImage(image, {}).catch((e) => e);
    expect(BuildFailedError.isInstance(error)).toBe(true);
    expect(error.details.step).toContain("exit 3");
    expect(error.details.logTail).toEqual(expect.arrayContaining(["engine-fail-line-1", "engine-fail-line-2"]));
  });

  it("cancellation cancels the Solve: CancelledError within seconds, and the engine builds the next image at once", async () => {
    const marker = uniqueName("m");
    const image = Image.fromBase(busybox, { name: uniqueName("kiln-bk-engine-cancel") }).withCommands(`echo started-${marker} && sleep 120`);
    cleanup.image(image.uri);
    const controller = new AbortController();
    const started = Date.now();
    const error = await new BuildKitImageBuilder()
      .buildImage(image, {
        signal: controller.signal,
        onEvent: (e: BuildEvent) => {
          if (e.type === "build.log" && e.line.includes(`started-${marker}`)) controller.abort();
        },
      })
      .catch((e) => e);
    expect(CancelledError.isInstance(error)).toBe(true);
    expect(Date.now() - started).toBeLessThan(30_000);
    const next = Image.fromBase(busybox, { name: uniqueName("kiln-bk-after-cancel") }).withCommands("true");
    cleanup.image(next.uri);
    await new BuildKitImageBuilder().buildImage(next, {});
  });

  it("refuses linux/arm64 FROM an amd64-only base before solving (BuildKit would label amd64 binaries arm64)", async () => {
    const image = Image.fromBase(busybox, { name: uniqueName("kiln-bk-arm"), platform: ["linux/arm64"] }).withCommands("true");
    const c = collector();
    const error = await new BuildKitImageBuilder().buildImage(image, { onEvent: c.onEvent }).catch((e) => e);
    expect(BuildFailedError.isInstance(error)).toBe(true);
    expect(error.message).toContain("linux/arm64");
    expect(error.details.missing).toEqual(["linux/arm64"]);
    expect(c.of("build.step")).toHaveLength(0);
  });

  it("a rebuild after a one-file edit sends only that file (the daemon keeps the rest by the session's shared key)", async () => {
    const files: Record<string, string> = {};
    for (let i = 0; i < 20; i++) files[`f${i}.txt`] = `${i}`.repeat(50_000);
    const src = await tree(files);
    const image = () => Image.fromBase(busybox, { name: "kiln-bk-incremental-test" }).withSourceFolder(src, "/app");
    const client = await BuildKitClient.connect(parseEndpoint({ host: "docker-engine" }));
    try {
      const solve = (img: Image) =>
        solveImage(client, {
          image: img,
          uri: img.uri,
          platforms: ["linux/amd64"],
          exporter: { type: "moby", attrs: { name: img.uri } },
          labels: {},
          secrets: new Map(),
          redact: (t) => t,
        });
      const first = image();
      cleanup.image(first.uri);
      await solve(first);
      await writeFile(join(src, "f3.txt"), "edited");
      const second = image();
      cleanup.image(second.uri);
      const resent = await solve(second);
      expect(resent.sentBytes).toBeLessThan(1000);
      expect((await runInImage(second.uri, ["cat", "/app/f3.txt"])).trim()).toBe("edited");
    } finally {
      client.close();
    }
  });

  it("a cold build sends each context file once: the frontend's `.dockerignore` read (followpaths) gets nothing else", async () => {
    const files: Record<string, string> = {};
    for (let i = 0; i < 8; i++) files[`blob${i}.txt`] = `${i}`.repeat(100_000);
    const src = await tree(files);
    // A name of its own: a new shared key, so nothing is cached at the daemon yet.
    const image = Image.fromBase(busybox, { name: uniqueName("kiln-bk-once") }).withSourceFolder(src, "/app");
    cleanup.image(image.uri);
    const client = await BuildKitClient.connect(parseEndpoint({ host: "docker-engine" }));
    try {
      const solved = await solveImage(client, {
        image,
        uri: image.uri,
        platforms: ["linux/amd64"],
        exporter: { type: "moby", attrs: { name: image.uri } },
        labels: {},
        secrets: new Map(),
        noCache: true,
        redact: (t) => t,
      });
      // 800 000 bytes of files and the rendered Dockerfile; not twice the context.
      expect(solved.sentBytes).toBeGreaterThanOrEqual(800_000);
      expect(solved.sentBytes).toBeLessThan(800_000 + 10_000);
      expect((await runInImage(image.uri, ["cat", "/app/blob7.txt"])).trim()).toBe("7".repeat(100_000));
    } finally {
      client.close();
    }
  });

  it("a source edited after its content tag was computed: SourceChangedError naming the file, and no image", async () => {
    const src = await tree({ "app.txt": "original-content\n", "other.txt": "x".repeat(200_000) });
    const image = Image.fromBase(busybox, { name: uniqueName("kiln-bk-changed") }).withSourceFolder(src, "/app");
    // What the engine does before a build: list and hash the sources once, and pin them to the image built.
    const pinned = pinSources(image);
    cleanup.image(pinned.uri);
    await writeFile(join(src, "app.txt"), "EDITED-content!\n"); // same size
    const error = await new BuildKitImageBuilder().buildImage(pinned, {}).catch((e) => e);
    expect(SourceChangedError.isInstance(error)).toBe(true);
    expect(error.message).toContain("app.txt");
    expect(await localImageExists(pinned.uri)).toBe(false);
  });

  it("a rebuild sends a file rewritten with the same size and mtime (its modTime carries its content digest)", async () => {
    const src = await tree({ "app.txt": "version-1\n", "keep.txt": "kept\n" });
    const image = () => Image.fromBase(busybox, { name: "kiln-bk-same-stat-test" }).withSourceFolder(src, "/app");
    const first = image();
    const firstUri = first.uri; // (a content tag is computed from the files as they are when asked)
    cleanup.image(firstUri);
    await new BuildKitImageBuilder().buildImage(first, {});
    // Same size, and the very same mtime (to the nanosecond) as before: only the content differs.
    await execFileAsync("cp", ["-p", join(src, "app.txt"), join(src, "stamp")]);
    await writeFile(join(src, "app.txt"), "version-2\n");
    await execFileAsync("touch", ["-r", join(src, "stamp"), join(src, "app.txt")]);
    await rm(join(src, "stamp"));
    const second = image();
    cleanup.image(second.uri);
    expect(second.uri).not.toBe(firstUri);
    await new BuildKitImageBuilder().buildImage(second, {});
    expect((await runInImage(second.uri, ["cat", "/app/app.txt"])).trim()).toBe("version-2");
  });

  it("an unreachable endpoint in the pool is skipped with a warning; none reachable names them all", async () => {
    const image = Image.fromBase(busybox, { name: uniqueName("kiln-bk-skip") }).withCommands("true");
    cleanup.image(image.uri);
    const c = collector();
    await new BuildKitImageBuilder({ endpoints: ["unix:///nonexistent/bk.sock", "docker-engine"] }).buildImage(image, { onEvent: c.onEvent });
    expect(c.of("warning").some((e) => e.message.includes("unix:///nonexistent/bk.sock"))).toBe(true);
    const error = await new BuildKitImageBuilder({ endpoints: ["unix:///nonexistent/bk.sock"] }).buildImage(image, {}).catch((e) => e);
    expect(DaemonUnavailableError.isInstance(error)).toBe(true);
    expect(error.message).toContain("unix:///nonexistent/bk.sock");
  });
});

describe("pushes through the engine in three auth modes; the digest is the registry's", () => {
  for (const auth of ["none", "basic", "bearer"] as const) {
    it(`${auth}`, async () => {
      const r = await startRegistry({ auth });
      registries.push(r);
      let env: NodeJS.ProcessEnv = process.env;
      if (r.credentials) {
        const config = await dockerConfigWith(r.host, r.credentials.username, r.credentials.password);
        dirs.push(config);
        env = { ...process.env, DOCKER_CONFIG: config };
      }
      const src = await tree({ "x.txt": auth });
      const image = Image.fromBase(busybox, { registry: r.host, name: uniqueName(`kiln-bk-push-${auth}`) }).withSourceFolder(src, "/x");
      cleanup.image(image.uri);
      const c = collector();
      const result = await new BuildKitImageBuilder({ env }).buildImage(image, { onEvent: c.onEvent });
      const head = await new RegistryClient({ env }).headManifest(image.uri);
      expect(result.digest).toMatch(/^sha256:/);
      expect(head?.digest).toBe(result.digest);
      if (r.credentials) expect(JSON.stringify(c.events)).not.toContain(r.credentials.password);
    });
  }
});

describeBuilderConformance("BuildKitImageBuilder (docker-engine)", async () => {
  const r = await startRegistry();
  registries.push(r);
  const image = Image.fromBase(await ensureBusyboxImage(), { registry: r.host, name: uniqueName("kiln-bk-conformance") }).withCommands(
    "echo conformance > /c.txt",
  );
  cleanup.image(image.uri);
  const client = new RegistryClient();
  return { builder: new BuildKitImageBuilder(), image, exists: async (uri) => (await client.headManifest(uri)) !== null };
});
