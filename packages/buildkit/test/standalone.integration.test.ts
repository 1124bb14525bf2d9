/**
 * A real standalone buildkitd (BuildKit v0.11.6, KILN_TEST_BUILDKITD) on a unix socket and on tcp
 * with mTLS: the `image` exporter pushing to loopback registries (credentials served through the
 * session), a failing step, cancellation, registry cache export → import into a second daemon with an
 * empty cache, and a pool of two daemons sharing one run's images. Skipped, with the reason, where
 * KILN_TEST_BUILDKITD is not set.
 */
import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { BuildFailedError, CancelledError, DaemonUnavailableError, Image, RegistryClient, type BuildEvent } from "@kiln/core";
import {
  BUILDKITD_SKIP_REASON,
  ensureArm64Emulation,
  pushMultiArchBusybox,
  startBuildkitd,
  startRegistry,
  testBuildkitdBinary,
  uniqueName,
  type TestBuildkitd,
  type TestRegistry,
} from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BuildKitImageBuilder } from "../src/builder.js";
import { busyboxInRegistry, collector, dockerConfigWith, fileInLayer, tempTree } from "./helpers.js";

const binary = testBuildkitdBinary();

describe.skipIf(!binary)(`standalone buildkitd${binary ? "" : ` — skipped: ${BUILDKITD_SKIP_REASON}`}`, () => {
  let open: TestRegistry;
  let basic: TestRegistry;
  let daemon: TestBuildkitd;
  let base: string;
  const dirs: string[] = [];
  const stops: Array<() => Promise<void>> = [];

  beforeAll(async () => {
    open = await startRegistry();
    basic = await startRegistry({ auth: "basic" });
    stops.push(
      () => open.stop(),
      () => basic.stop(),
    );
    base = await busyboxInRegistry(open.host);
    // Before the daemon starts: buildkitd lists the platforms it can run (emulated arm64 among them) at startup.
    await ensureArm64Emulation();
    daemon = await startBuildkitd({ insecureRegistries: [open.host, basic.host], tls: true });
    stops.push(() => daemon.stop());
  });
  afterAll(async () => {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  async function sourceImage(registry: string, prefix: string, files: Record<string, string> = { "app.txt": `${prefix}\n` }): Promise<Image> {
    const src = await tempTree(files);
    dirs.push(src);
    return Image.fromBase(base, { registry, name: uniqueName(prefix) })
      .withSourceFolder(src, "/app")
      .withCommands("cat /app/app.txt > /copied.txt");
  }

  it("unix socket: the image exporter pushes (push=true); the digest returned is the one the registry serves", async () => {
    const image = await sourceImage(open.host, "kiln-bk-unix");
    const c = collector();
    const result = await new BuildKitImageBuilder({ endpoints: [daemon.unixAddress] }).buildImage(image, { onEvent: c.onEvent });
    expect(result.uri).toBe(image.uri);
    expect(result.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    const head = await new RegistryClient().headManifest(image.uri);
    expect(head?.digest).toBe(result.digest);
    expect(c.of("build.step").some((e) => e.step.includes("COPY"))).toBe(true);
    expect(c.of("push.done").at(-1)?.digest).toBe(result.digest);
  });

  it("tcp with mTLS, to a Basic-auth registry: credentials from the Docker config reach the daemon through the session", async () => {
    const config = await dockerConfigWith(basic.host, basic.credentials!.username, basic.credentials!.password);
    dirs.push(config);
    const env = { ...process.env, DOCKER_CONFIG: config };
    const image = await sourceImage(basic.host, "kiln-bk-tls");
    const builder = new BuildKitImageBuilder({
      env,
      endpoints: [
        { host: daemon.tcpAddress!, tls: { ca: daemon.tlsFiles!.ca, cert: daemon.tlsFiles!.cert, key: daemon.tlsFiles!.key, serverName: "localhost" } },
      ],
    });
    const result = await builder.buildImage(image, {});
    const head = await new RegistryClient({ env }).headManifest(image.uri);
    expect(head?.digest).toBe(result.digest);
  });

  it("tcp without the client certificate: DaemonUnavailableError naming the endpoint", async () => {
    const image = await sourceImage(open.host, "kiln-bk-nocert");
    const error = await new BuildKitImageBuilder({ endpoints: [{ host: daemon.tcpAddress!, tls: { ca: daemon.tlsFiles!.ca } }], connectTimeoutMs: 5000 })
      .buildImage(image, {})
      .catch((e) => e);
    expect(DaemonUnavailableError.isInstance(error)).toBe(true);
    expect(error.message).toContain(daemon.tcpAddress);
  });

  it("a failing step: BuildFailedError naming the step, with its log tail", async () => {
    const image = Image.fromBase(base, { registry: open.host, name: uniqueName("kiln-bk-fail") }).withCommands("echo about-to-fail-xyz && exit 7");
    const error = await new BuildKitImageBuilder({ endpoints: [daemon.unixAddress] }).buildImage(image, {}).catch((e) => e);
    expect(BuildFailedError.isInstance(error)).toBe(true);
    expect(error.details.step).toContain("exit 7");
    expect(error.details.logTail.join("\n")).toContain("about-to-fail-xyz");
    expect(error.message).toMatch(/exit code: 7/);
  });

  it("cancellation (AbortSignal) cancels the Solve on the daemon: CancelledError within seconds, the step never completes", async () => {
    const marker = uniqueName("kiln-bk-cancel-marker");
    const image = Image.fromBase(base, { registry: open.host, name: uniqueName("kiln-bk-cancel") }).withCommands(
      `echo started-${marker} && sleep 60 && echo finished-${marker}`,
    );
    const controller = new AbortController();
    const events: BuildEvent[] = [];
    const started = Date.now();
    const pending = new BuildKitImageBuilder({ endpoints: [daemon.unixAddress] }).buildImage(image, {
      signal: controller.signal,
      onEvent: (e) => {
        events.push(e);
        if (e.type === "build.log" && e.line.includes(`started-${marker}`)) controller.abort();
      },
    });
    const error = await pending.catch((e) => e);
    expect(CancelledError.isInstance(error)).toBe(true);
    expect(Date.now() - started).toBeLessThan(30_000);
    // Nothing was pushed.
    expect(await new RegistryClient().headManifest(image.uri)).toBeNull();
    // The daemon is free for the next build at once (the cancelled Solve is gone).
    const next = await sourceImage(open.host, "kiln-bk-after-cancel");
    await new BuildKitImageBuilder({ endpoints: [daemon.unixAddress] }).buildImage(next, {});
  });

  it("registry cache: exported (mode=max) by one buildkitd, imported by a second one with an empty cache — its RUN steps are CACHED", async () => {
    const second = await startBuildkitd({ insecureRegistries: [open.host] });
    stops.push(() => second.stop());
    const src = await tempTree({ "app.txt": "cached\n" });
    dirs.push(src);
    const image = Image.fromBase(base, { registry: open.host, name: uniqueName("kiln-bk-cache") })
      .withCommands("echo expensive-step > /expensive.txt")
      .withSourceFolder(src, "/app");
    await new BuildKitImageBuilder({ endpoints: [daemon.unixAddress], cacheTo: true }).buildImage(image, {});
    expect(await new RegistryClient().headManifest(`${open.host}/${image.name}:buildcache`)).not.toBeNull();

    const c = collector();
    await new BuildKitImageBuilder({ endpoints: [second.unixAddress], cacheFrom: true }).buildImage(image, { force: true, onEvent: c.onEvent });
    const run = c.of("build.step").find((e) => e.step.includes("expensive-step"));
    expect(run?.cached).toBe(true);
  });

  it("cacheFrom of a ref nobody exported yet (the first build): a cache miss — the build succeeds, with a warning naming the ref", async () => {
    const image = await sourceImage(open.host, "kiln-bk-cache-first");
    const c = collector();
    const result = await new BuildKitImageBuilder({ endpoints: [daemon.unixAddress], cacheFrom: true }).buildImage(image, { onEvent: c.onEvent });
    expect(await new RegistryClient().headManifest(image.uri)).toMatchObject({ digest: result.digest });
    const warnings = c.of("warning").filter((e) => e.message.includes("could not import the build cache"));
    expect(warnings.map((e) => e.message.includes(`${open.host}/${image.name}:buildcache`))).toEqual([true]);
  });

  it("a pool of two buildkitds shares the images of one run; an unreachable third member is skipped once, with a warning", async () => {
    const second = await startBuildkitd({ insecureRegistries: [open.host] });
    stops.push(() => second.stop());
    const builder = new BuildKitImageBuilder({ endpoints: [daemon.unixAddress, second.unixAddress, "unix:///nonexistent/kiln-buildkitd.sock"] });
    const images = await Promise.all([1, 2, 3, 4].map((i) => sourceImage(open.host, `kiln-bk-pool${i}`)));
    const c = collector();
    const used: string[] = [];
    const spy = (builder as unknown as { setup: { pool: { use: (...args: unknown[]) => Promise<unknown> } } }).setup;
    const original = spy.pool.use.bind(spy.pool);
    spy.pool.use = (image: unknown, platforms: unknown, options: unknown, work: unknown) =>
      original(image, platforms, options, (client: { endpoint: { address: string } }) => {
        used.push(client.endpoint.address);
        return (work as (c: unknown) => Promise<unknown>)(client);
      });
    const results = await Promise.all(images.map((image) => builder.buildImage(image, { onEvent: c.onEvent })));
    for (const [i, result] of results.entries()) expect(result.uri).toBe(images[i]!.uri);
    expect(new Set(used)).toEqual(new Set([daemon.unixAddress, second.unixAddress]));
    // The unreachable member got its turn, was skipped with a warning, and stayed out of the rest of the run.
    expect(c.of("warning").filter((e) => e.message.includes("/nonexistent/kiln-buildkitd.sock"))).toHaveLength(1);
  });

  it("two platforms in one Solve: one index with linux/amd64 and linux/arm64, each config naming its architecture, the arm64 RUN step run under emulation", async () => {
    const multiArchBase = await pushMultiArchBusybox(open.host);
    const image = Image.fromBase(multiArchBase, {
      registry: open.host,
      name: uniqueName("kiln-bk-multiarch"),
      platform: ["linux/amd64", "linux/arm64"],
    }).withCommands("uname -m > /arch.txt");
    const c = collector();
    const result = await new BuildKitImageBuilder({ endpoints: [daemon.unixAddress] }).buildImage(image, { onEvent: c.onEvent });
    const registry = new RegistryClient();
    const index = await registry.getManifest(image.uri);
    expect(index?.digest).toBe(result.digest);
    const children = (index!.manifest.manifests as Array<{ digest: string; platform: { os: string; architecture: string } }>).filter(
      (m) => m.platform.os !== "unknown",
    );
    expect(children.map((m) => `${m.platform.os}/${m.platform.architecture}`).sort()).toEqual(["linux/amd64", "linux/arm64"]);
    const ranOn: Record<string, string | undefined> = {};
    for (const child of children) {
      const manifest = (await registry.getManifest(`${open.host}/${image.name}@${child.digest}`))!.manifest as {
        config: { digest: string };
        layers: Array<{ digest: string }>;
      };
      const config = JSON.parse((await registry.getBlob(image.uri, manifest.config.digest))!.toString("utf8")) as { architecture: string; os: string };
      expect(config).toMatchObject({ os: "linux", architecture: child.platform.architecture });
      // The RUN step's layer holds what `uname -m` printed on that platform.
      for (const layer of manifest.layers) ranOn[config.architecture] ??= fileInLayer((await registry.getBlob(image.uri, layer.digest))!, "arch.txt");
    }
    expect(ranOn).toEqual({ amd64: "x86_64\n", arm64: "aarch64\n" });
    // One Solve: the daemon reported each platform's RUN step.
    const runs = c
      .of("build.step")
      .filter((e) => e.step.includes("uname -m"))
      .map((e) => e.step);
    expect(runs.some((step) => step.startsWith("[linux/arm64 "))).toBe(true);
    expect(runs.some((step) => step.startsWith("[linux/amd64 "))).toBe(true);
  });

  it("platforms pinned to different endpoints: amd64 built on one buildkitd, arm64 on another, one index naming both children", async () => {
    const armBox = await startBuildkitd({ insecureRegistries: [open.host] });
    stops.push(() => armBox.stop());
    const multiArchBase = await pushMultiArchBusybox(open.host);
    const image = Image.fromBase(multiArchBase, {
      registry: open.host,
      name: uniqueName("kiln-bk-split"),
      platform: ["linux/amd64", "linux/arm64"],
    }).withCommands("uname -m > /arch.txt");
    const builder = new BuildKitImageBuilder({
      endpoints: [
        { host: daemon.unixAddress, platforms: ["linux/amd64"] },
        { host: armBox.unixAddress, platforms: ["linux/arm64"] },
      ],
    });
    const c = collector();
    const result = await builder.buildImage(image, { onEvent: c.onEvent });

    // The index under the tag, as the registry serves it (core's client), names one child per platform.
    const registry = new RegistryClient();
    const index = await registry.getManifest(image.uri);
    expect(index?.digest).toBe(result.digest);
    const children = index!.manifest.manifests as Array<{ digest: string; platform: { os: string; architecture: string } }>;
    expect(children.map((m) => `${m.platform.os}/${m.platform.architecture}`).sort()).toEqual(["linux/amd64", "linux/arm64"]);
    const ranOn: Record<string, string | undefined> = {};
    const builtBy: Record<string, string[]> = {};
    for (const child of children) {
      const manifest = (await registry.getManifest(`${open.host}/${image.name}@${child.digest}`))!.manifest as {
        config: { digest: string };
        layers: Array<{ digest: string }>;
      };
      const config = JSON.parse((await registry.getBlob(image.uri, manifest.config.digest))!.toString("utf8")) as { architecture: string };
      expect(config.architecture).toBe(child.platform.architecture);
      for (const layer of manifest.layers) ranOn[config.architecture] ??= fileInLayer((await registry.getBlob(image.uri, layer.digest))!, "arch.txt");
      // Which daemon made the child: the one whose content store holds its manifest.
      builtBy[child.platform.architecture] = [daemon, armBox].filter((d) => daemonHolds(d, child.digest)).map((d) => d.unixAddress);
    }
    expect(ranOn).toEqual({ amd64: "x86_64\n", arm64: "aarch64\n" });
    expect(builtBy).toEqual({ amd64: [daemon.unixAddress], arm64: [armBox.unixAddress] });
    // Each child was pushed by digest only: the per-platform pushes left no tag besides the image's own.
    const tags = (await (await fetch(`http://${open.host}/v2/${image.name}/tags/list`)).json()) as { tags: string[] };
    expect(tags.tags).toEqual([image.tag]);
    expect(c.of("push.done").at(-1)?.digest).toBe(result.digest);
  });

  it("kiln.config.json builderOptions.buildkit: the project's endpoint and cacheTo reach the daemon (image pushed, cache exported)", async () => {
    const project = await tempTree({
      "package.json": JSON.stringify({ name: "configured-app", private: true }),
      "kiln.config.json": JSON.stringify({ builderOptions: { buildkit: { endpoints: [daemon.unixAddress], cacheTo: true } } }),
    });
    dirs.push(project);
    const image = await sourceImage(open.host, "kiln-bk-configured");
    // No endpoints option and no KILN_BUILDKIT_HOST: without the project's settings this would go to the engine, which cannot export a cache.
    const env = { ...process.env, KILN_BUILDKIT_HOST: "", KILN_BUILDKIT_CACHE_TO: "" };
    const c = collector();
    const result = await new BuildKitImageBuilder({ env, projectDir: project }).buildImage(image, { onEvent: c.onEvent });
    expect(await new RegistryClient().headManifest(image.uri)).toMatchObject({ digest: result.digest });
    expect(await new RegistryClient().headManifest(`${open.host}/${image.name}:buildcache`)).not.toBeNull();
    expect(c.of("warning")).toEqual([]);
  });

  it("no endpoint reachable: DaemonUnavailableError naming every one", async () => {
    const image = await sourceImage(open.host, "kiln-bk-none");
    const error = await new BuildKitImageBuilder({ endpoints: ["unix:///nonexistent/a.sock", "unix:///nonexistent/b.sock"] })
      .buildImage(image, {})
      .catch((e) => e);
    expect(DaemonUnavailableError.isInstance(error)).toBe(true);
    expect(error.message).toContain("/nonexistent/a.sock");
    expect(error.message).toContain("/nonexistent/b.sock");
  });
});

/** Whether a buildkitd's content store (OCI worker) holds the blob `digest`: what it built or pulled. */
function daemonHolds(daemon: TestBuildkitd, digest: string): boolean {
  return existsSync(join(daemon.root, "state", "runc-overlayfs", "content", "blobs", "sha256", digest.replace(/^sha256:/, "")));
}
