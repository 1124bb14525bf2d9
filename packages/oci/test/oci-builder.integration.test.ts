/**
 * OciImageBuilder end to end, with real parts only: a busybox base (made locally) pushed with
 * `docker push` into an open loopback registry; images built by the oci builder (no daemon involved)
 * pushed into Debian's docker-registry in its three auth modes; then `docker run` of what was pushed
 * (the CLI given the credentials through its own temporary DOCKER_CONFIG) shows the files, env,
 * working directory and USER as declared.
 */
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  BuildFailedError,
  CannotBuildError,
  Image,
  RegistryClient,
  build,
  init,
  registerImageBuilder,
  unregisterImageBuilder,
  type BuildEvent,
  type ImageBuilder,
} from "@kiln/core";
import { describeBuilderConformance } from "@kiln/core/testing";
import { docker, ensureBusyboxImage, startRegistry, startPushFaultProxy, pushSteps, type TestRegistry } from "@kiln/test-utils";
import { OciImageBuilder } from "../src/index.js";

const registries: TestRegistry[] = [];
const tempDirs: string[] = [];
let baseRegistry: TestRegistry;
let baseRef: string;

function makeSourceTree(): string {
  const root = mkdtempSync(join(tmpdir(), "kiln-oci-src-"));
  tempDirs.push(root);
  mkdirSync(join(root, "src", "sub"), { recursive: true });
  writeFileSync(join(root, "src", "app.py"), "print('hello from oci')\n");
  writeFileSync(join(root, "src", "run.sh"), "#!/bin/sh\necho ran\n", { mode: 0o755 });
  writeFileSync(join(root, "src", "sub", "data.txt"), "data\n");
  writeFileSync(join(root, "src", "debug.log"), "ignored\n");
  writeFileSync(join(root, "src", ".dockerignore"), "*.log\n");
  symlinkSync("sub/data.txt", join(root, "src", "link.txt"));
  writeFileSync(join(root, "config.yaml"), "mode: prod\n");
  return root;
}

function declare(root: string, registry: string, name: string): Image {
  return Image.fromBase(baseRef)
    .withSourceFolder(join(root, "src"), "/app")
    .withEnvVars({ MODE: "prod", GREETING: "a $HOME b" })
    .withWorkdir("/app")
    .withUser("1000:1000")
    .withSourceFile(join(root, "config.yaml"), "conf/config.yaml")
    .withLabels({ "org.example.team": "kiln" })
    .clone({ registry, name, platform: ["linux/amd64"] });
}

const clientFor = (registry: TestRegistry, host = registry.host) =>
  new RegistryClient({ useDockerConfig: false, credentials: registry.credentials ? { [host]: registry.credentials } : {} });
const builderFor = (registry: TestRegistry, host = registry.host) =>
  new OciImageBuilder({ client: clientFor(registry, host), env: { ...process.env, SOURCE_DATE_EPOCH: "" } });

/** `docker run` with the registry's credentials in a DOCKER_CONFIG of the test's own (never ~/.docker). */
async function runPushed(registry: TestRegistry, uri: string, script: string): Promise<string> {
  const config = mkdtempSync(join(tmpdir(), "kiln-oci-dockercfg-"));
  tempDirs.push(config);
  const auths = registry.credentials
    ? { [registry.host]: { auth: Buffer.from(`${registry.credentials.username}:${registry.credentials.password}`).toString("base64") } }
    : {};
  writeFileSync(join(config, "config.json"), JSON.stringify({ auths }));
  const env = { DOCKER_CONFIG: config };
  try {
    await docker(["pull", uri], { env, timeoutMs: 120_000 });
    return await docker(["run", "--rm", "--network", "none", uri, "sh", "-c", script], { env, timeoutMs: 120_000 });
  } finally {
    await docker(["image", "rm", "-f", uri], { env }).catch(() => undefined);
  }
}

beforeAll(async () => {
  const busybox = await ensureBusyboxImage();
  baseRegistry = await startRegistry({ auth: "none" });
  registries.push(baseRegistry);
  baseRef = `${baseRegistry.host}/kiln/busybox:1.35`;
  await docker(["tag", busybox, baseRef]);
  await docker(["push", baseRef], { timeoutMs: 120_000 });
  await docker(["image", "rm", baseRef]).catch(() => undefined);
});

afterAll(async () => {
  for (const registry of registries) await registry.stop();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

describe.each(["none", "basic", "bearer"] as const)("oci builder pushes to a registry with auth %s", (auth) => {
  let registry: TestRegistry;
  beforeAll(async () => {
    registry = auth === "none" ? baseRegistry : await startRegistry({ auth });
    if (registry !== baseRegistry) registries.push(registry);
  });

  it("builds a copy-only image without a daemon; docker runs it with the files, env, workdir and USER declared", async () => {
    const image = declare(makeSourceTree(), registry.host, `kiln/oci-hello-${auth}`);
    const events: BuildEvent[] = [];
    const built = await builderFor(registry).buildImage(image, { onEvent: (e) => events.push(e) });
    expect(built.uri).toBe(image.uri);
    expect(built.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect((await clientFor(registry).headManifest(image.uri))?.digest).toBe(built.digest);
    expect(events.find((e) => e.type === "build.start")).toMatchObject({ builder: "oci" });
    // Same registry as the base (open mode): base layers mounted, not uploaded again.
    if (auth === "none") expect(events.some((e) => e.type === "push.progress" && e.status === "mounted")).toBe(true);

    const out = await runPushed(
      registry,
      image.uri,
      'cat /app/app.py; /app/run.sh; cat /app/link.txt; readlink /app/link.txt; test -e /app/debug.log && echo LOG-PRESENT; echo "MODE=$MODE"; echo "GREETING=$GREETING"; echo "uid=$(id -u)"; echo "pwd=$(pwd)"; stat -c "%u:%g %a" /app/conf/config.yaml /app/app.py /app/run.sh; cat /app/conf/config.yaml',
    );
    expect(out).toContain("hello from oci");
    expect(out).toContain("ran");
    expect(out).toContain("data\nsub/data.txt");
    expect(out).not.toContain("LOG-PRESENT");
    expect(out).toContain("MODE=prod");
    expect(out).toContain("GREETING=a $HOME b");
    expect(out).toContain("uid=1000");
    expect(out).toContain("pwd=/app");
    expect(out).toContain("1000:1000 644"); // copied after withUser: chowned, as COPY --chown does
    expect(out).toContain("0:0 644"); // copied before it: root
    expect(out).toContain("0:0 755"); // the executable keeps its bit
    expect(out).toContain("mode: prod");
  });
});

describe("oci builder: reproducible, refuses what it cannot build", () => {
  it("the same spec in two clones of the source tree, built by two builders, gives the same manifest digest", async () => {
    const a = makeSourceTree();
    const b = mkdtempSync(join(tmpdir(), "kiln-oci-clone-"));
    tempDirs.push(b);
    cpSync(a, b, { recursive: true, verbatimSymlinks: true });
    const imageA = declare(a, baseRegistry.host, "kiln/repro-a");
    const imageB = declare(b, baseRegistry.host, "kiln/repro-b");
    expect(imageA.tag).toBe(imageB.tag);
    const first = await builderFor(baseRegistry).buildImage(imageA, {});
    const second = await builderFor(baseRegistry).buildImage(imageB, {});
    expect(second.digest).toBe(first.digest);
    // And a change of one byte changes it.
    writeFileSync(join(b, "src", "app.py"), "print('hello from oci!')\n");
    const changed = await builderFor(baseRegistry).buildImage(declare(b, baseRegistry.host, "kiln/repro-b"), {});
    expect(changed.digest).not.toBe(first.digest);
  });

  it("an image with a RUN step: canBuild names the layer, buildImage fails with CannotBuildError, nothing is pushed", async () => {
    const image = Image.fromBase(baseRef)
      .withSourceFile(join(makeSourceTree(), "config.yaml"), "/c.yaml")
      .withCommands("echo hi")
      .clone({ registry: baseRegistry.host, name: "kiln/cannot" });
    const builder = builderFor(baseRegistry);
    const answer = builder.canBuild(image);
    expect(answer.ok).toBe(false);
    expect(!answer.ok && answer.reason).toMatch(/layers\[1\] \(withCommands "echo hi"\)/);
    const error = await builder.buildImage(image, {}).catch((e: unknown) => e);
    expect(CannotBuildError.isInstance(error)).toBe(true);
    expect((error as Error).message).toContain("withCommands");
    expect(await clientFor(baseRegistry).headManifest(image.uri)).toBeNull();
  });

  it("a platform the base does not have is an error naming the base and its platforms", async () => {
    const image = declare(makeSourceTree(), baseRegistry.host, "kiln/arm").clone({ platform: ["linux/arm64"] });
    const error = await builderFor(baseRegistry)
      .buildImage(image, {})
      .catch((e: unknown) => e);
    expect(BuildFailedError.isInstance(error)).toBe(true);
    expect((error as Error).message).toContain(baseRef);
    expect((error as Error).message).toContain("linux/arm64");
    expect((error as Error).message).toContain("it has: linux/amd64");
    expect(await clientFor(baseRegistry).headManifest(image.uri)).toBeNull();
  });

  it("a registry failing every upload: the build fails with a typed error and the tag is never written", async () => {
    const proxy = await startPushFaultProxy(baseRegistry.url, { faults: [], match: pushSteps.uploadData, then: { kind: "status", status: 503 } });
    try {
      const image = declare(makeSourceTree(), proxy.host, "kiln/faulty");
      const builder = new OciImageBuilder({ client: new RegistryClient({ useDockerConfig: false, retry: { retries: 1, baseDelayMs: 10, maxDelayMs: 20 } }) });
      const error = await builder.buildImage(image, {}).catch((e: unknown) => e);
      expect((error as { code?: string }).code).toBe("KILN_REGISTRY");
      expect(proxy.requests.some(pushSteps.manifestPut)).toBe(false);
      expect(await clientFor(baseRegistry).headManifest(`${baseRegistry.host}/kiln/faulty:${image.tag}`)).toBeNull();
    } finally {
      await proxy.stop();
    }
  });
});

describe("oci builder chosen by the engine", () => {
  it("no builder configured, oci and docker installed: the copy-only image is built and pushed by oci, the one with a RUN step goes to docker", async () => {
    const project = mkdtempSync(join(tmpdir(), "kiln-oci-project-"));
    tempDirs.push(project);
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "fixture", private: true }));
    const dockerCalls: string[] = [];
    const fakeDocker: ImageBuilder = { buildImage: async (image) => (dockerCalls.push(image.uri), { uri: image.uri }) };
    registerImageBuilder("docker", fakeDocker);
    registerImageBuilder("oci", builderFor(baseRegistry));
    init({ projectDir: project });
    try {
      const copyOnly = declare(makeSourceTree(), baseRegistry.host, "kiln/engine-picked");
      const result = await build(copyOnly, { projectDir: project });
      expect(result).toMatchObject({ outcome: "built", builder: "oci" });
      expect((await clientFor(baseRegistry).headManifest(copyOnly.uri))?.digest).toBe(result.digest);
      const withRun = copyOnly.withCommands("true");
      expect(await build(withRun, { projectDir: project })).toMatchObject({ builder: "docker" });
      expect(dockerCalls).toEqual([withRun.uri]);
    } finally {
      unregisterImageBuilder("docker");
      unregisterImageBuilder("oci");
      init({});
    }
  });
});

describeBuilderConformance("OciImageBuilder", async () => {
  const registry = await startRegistry({ auth: "none" });
  registries.push(registry);
  // The base must be reachable before the suite runs (the top-level beforeAll runs first).
  const image = declare(makeSourceTree(), registry.host, "kiln/conformance");
  return {
    builder: builderFor(registry),
    image,
    exists: async (uri: string) => (await clientFor(registry).headManifest(uri)) !== null,
  };
});
