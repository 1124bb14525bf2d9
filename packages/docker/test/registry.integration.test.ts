// Pushes through the real registry in its three auth modes, a multi-platform OCI index, the engine's
// "found, not built again", and core's builder conformance suite.
import { rm } from "node:fs/promises";
import { AuthError, build, Image, registerCredentialProvider, RegistryClient } from "@kiln/core";
import { describeBuilderConformance } from "@kiln/core/testing";
import { DockerCleanup, docker, ensureBusyboxImage, startRegistry, uniqueName, type TestRegistry } from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DockerImageBuilder } from "../src/builder.js";
import { platformTag } from "../src/push/multiPlatform.js";
import { collector, dockerConfigWith, tempTree } from "./helpers.js";

let busybox: string;
const cleanup = new DockerCleanup();
const dirs: string[] = [];
const registries: TestRegistry[] = [];

beforeAll(async () => {
  busybox = await ensureBusyboxImage();
});
afterAll(async () => {
  await cleanup.run();
  await Promise.all([...registries.map((r) => r.stop()), ...dirs.map((d) => rm(d, { recursive: true, force: true }))]);
});

async function registry(auth: "none" | "basic" | "bearer"): Promise<TestRegistry> {
  const r = await startRegistry({ auth });
  registries.push(r);
  return r;
}

function smallImage(host: string, prefix: string): Image {
  return Image.fromBase(busybox, { registry: host, name: uniqueName(prefix) }).withCommands(`echo ${prefix} > /which.txt`);
}

describe("push with registry authentication", () => {
  it("Basic auth: credentials from the Docker config's auths; the pushed digest is served by the registry", async () => {
    const r = await registry("basic");
    const config = await dockerConfigWith(r.host, r.credentials!.username, r.credentials!.password);
    dirs.push(config);
    const env = { ...process.env, DOCKER_CONFIG: config };
    const image = smallImage(r.host, "kiln-basic");
    cleanup.image(image.uri);
    const result = await new DockerImageBuilder({ env }).buildImage(image, {});
    const head = await new RegistryClient({ env }).headManifest(image.uri);
    expect(head?.digest).toBe(result.digest);
  });

  it("Basic auth with a wrong password: AuthError naming the registry, without the credential", async () => {
    const r = await registry("basic");
    const wrong = "wrong-Secret-123";
    const config = await dockerConfigWith(r.host, r.credentials!.username, wrong);
    dirs.push(config);
    const image = smallImage(r.host, "kiln-badauth");
    cleanup.image(image.uri);
    const c = collector();
    const error = await new DockerImageBuilder({ env: { ...process.env, DOCKER_CONFIG: config } }).buildImage(image, { onEvent: c.onEvent }).catch((e) => e);
    expect(AuthError.isInstance(error)).toBe(true);
    expect(error.message).toContain(r.host);
    const everything = JSON.stringify([error.message, error.hint, error.details, c.events]);
    expect(everything).not.toContain(wrong);
    expect(everything).not.toContain(Buffer.from(`${r.credentials!.username}:${wrong}`).toString("base64"));
  });

  it("a credential provider that throws is an AuthError naming the provider, not its raw error", async () => {
    const host = "127.0.0.1:9";
    const remove = registerCredentialProvider({
      name: "kiln-docker-broken-provider",
      matches: (h) => h === host,
      getCredentials: () => {
        throw new Error("token service exploded");
      },
    });
    try {
      const error = await new DockerImageBuilder().buildImage(smallImage(host, "kiln-broken-provider"), {}).catch((e) => e);
      expect(AuthError.isInstance(error)).toBe(true);
      expect(error.message).toContain('"kiln-docker-broken-provider"');
      expect(error.details).toMatchObject({ registry: host, provider: "kiln-docker-broken-provider" });
    } finally {
      remove();
    }
  });

  it("Bearer auth: credentials from a plugin credential provider; the daemon runs the token flow", async () => {
    const r = await registry("bearer");
    const remove = registerCredentialProvider({
      name: "kiln-docker-test",
      matches: (host) => host === r.host,
      getCredentials: () => r.credentials,
    });
    try {
      const image = smallImage(r.host, "kiln-bearer");
      cleanup.image(image.uri);
      const result = await new DockerImageBuilder({ env: { ...process.env, DOCKER_CONFIG: "/nonexistent" } }).buildImage(image, {});
      const head = await new RegistryClient({ credentials: { [r.host]: r.credentials! } }).headManifest(image.uri);
      expect(head?.digest).toBe(result.digest);
      expect(r.tokenServer!.requests.length).toBeGreaterThan(0);
    } finally {
      remove();
    }
  });
});

describe("multi-platform images", () => {
  it("builds amd64 and arm64 separately, pushes each by digest and puts an OCI index; a second run rebuilds nothing", async () => {
    const r = await registry("none");
    const src = await tempTree({ "hello.txt": "multi-arch hello\n" });
    dirs.push(src);
    const image = Image.fromBase("scratch", { registry: r.host, name: uniqueName("kiln-multi"), platform: ["linux/amd64", "linux/arm64"] }).withSourceFile(
      `${src}/hello.txt`,
      "/hello.txt",
    );
    for (const p of image.platform) cleanup.image(`${r.host}/${image.name}:${platformTag(image.tag, p)}`);
    const builder = new DockerImageBuilder();
    const c = collector();
    const result = await builder.buildImage(image, { onEvent: c.onEvent });

    const client = new RegistryClient();
    const index = await client.getManifest(image.uri);
    expect(index?.digest).toBe(result.digest);
    expect(index?.mediaType).toBe("application/vnd.oci.image.index.v1+json");
    const manifests = (index!.manifest as { manifests: Array<{ digest: string; platform: { os: string; architecture: string } }> }).manifests;
    expect(manifests.map((m) => `${m.platform.os}/${m.platform.architecture}`)).toEqual(["linux/amd64", "linux/arm64"]);
    // Each entry is a pushed image whose config says the same platform.
    expect(await client.platforms(image.uri)).toEqual({ digest: result.digest, platforms: ["linux/amd64", "linux/arm64"] });
    const pushedDigests = c
      .of("push.done")
      .filter((e) => e.platform)
      .map((e) => e.digest);
    expect(pushedDigests).toEqual(manifests.map((m) => m.digest));

    // Both per-platform images exist already: said in an event, nothing is built, same index.
    const again = collector();
    const second = await builder.buildImage(image, { onEvent: again.onEvent });
    expect(again.of("build.platforms-present")).toMatchObject([{ present: ["linux/amd64", "linux/arm64"], missing: [] }]);
    expect(again.of("build.step")).toHaveLength(0);
    expect(second.digest).toBe(result.digest);
  });
});

describe("multi-platform images through the engine (which pins the content tag)", () => {
  it("reuses per-platform images already pushed under the content tag, and rebuilds them all under force", async () => {
    const r = await registry("none");
    const src = await tempTree({ "hello.txt": "engine multi-arch\n" });
    dirs.push(src);
    const image = Image.fromBase("scratch", {
      registry: r.host,
      name: uniqueName("kiln-multi-engine"),
      platform: ["linux/amd64", "linux/arm64"],
    }).withSourceFile(`${src}/hello.txt`, "/hello.txt");
    const builder = new DockerImageBuilder();
    // An earlier run that pushed both per-platform images but not the index (e.g. it failed there).
    for (const p of image.platform) {
      const perPlatform = image.clone({ tag: platformTag(image.tag, p), platform: [p] });
      cleanup.image(perPlatform.uri);
      await builder.buildImage(perPlatform, {});
    }

    const reused = collector();
    const first = await build(image, { builder, onEvent: reused.onEvent });
    expect(first.outcome).toBe("built");
    expect(reused.of("build.platforms-present")).toMatchObject([{ present: ["linux/amd64", "linux/arm64"], missing: [] }]);
    expect(reused.of("push.done").filter((e) => e.platform)).toHaveLength(0);

    const forced = collector();
    const second = await build(image, { builder, force: true, onEvent: forced.onEvent });
    expect(second.outcome).toBe("built");
    expect(forced.of("build.platforms-present")).toHaveLength(0);
    expect(
      forced
        .of("push.done")
        .filter((e) => e.platform)
        .map((e) => e.platform),
    ).toEqual(["linux/amd64", "linux/arm64"]);
    expect((await new RegistryClient().platforms(image.uri))?.platforms).toEqual(["linux/amd64", "linux/arm64"]);
  });
});

describe("through the engine", () => {
  it("the second build() of the same spec finds the pushed image and builds nothing", async () => {
    const r = await registry("none");
    const image = smallImage(r.host, "kiln-engine");
    cleanup.image(image.uri);
    const builder = new DockerImageBuilder();
    const first = await build(image, { builder });
    expect(first.outcome).toBe("built");
    const c = collector();
    const second = await build(image, { builder, onEvent: c.onEvent });
    expect(second.outcome).toBe("found");
    expect(second.uri).toBe(image.uri);
    expect(c.of("build.start")).toHaveLength(0);
    expect(c.of("check.result").find((e) => e.result === "present")?.checker).toBe("docker-registry");
  });
});

let conformanceRegistry: TestRegistry;
describeBuilderConformance("DockerImageBuilder", async () => {
  conformanceRegistry = await registry("none");
  await ensureBusyboxImage();
  const image = Image.fromBase(busybox ?? (await ensureBusyboxImage()), { registry: conformanceRegistry.host, name: uniqueName("kiln-conf") }).withCommands(
    "true",
  );
  cleanup.image(image.uri);
  return {
    builder: new DockerImageBuilder(),
    image,
    exists: async (uri) => (await new RegistryClient().headManifest(uri)) !== null,
  };
});

// Keep `docker` imported for ad-hoc debugging of this suite.
void docker;
