/**
 * `registry: "oci:<dir>"`: the oci builder writes an OCI image layout instead of pushing, with no
 * Docker Engine reachable (DOCKER_HOST points nowhere) and no registry to push to — only the base is
 * read from a (loopback) registry. The real `kiln` CLI builds into the layout, a second build finds it
 * there (the layout checker), skopeo copies it into the Docker Engine and `docker run` runs it.
 */
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, readdirSync, symlinkSync, unlinkSync, writeFileSync, existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { Image, RegistryClient, checkImage } from "@kiln/core";
import { docker, ensureBusyboxImage, pushMultiArchBusybox } from "@kiln/test-utils";
import { OciImageBuilder, OciLayoutImageChecker, OciRegistryImageChecker, REF_NAME_ANNOTATION, blobPath, readLayoutIndex } from "../src/index.js";
import { TempDirs, baseRegistryForFile } from "./helpers.js";

const OCI_PKG = resolve(import.meta.dirname, "..");
const CORE_PKG = resolve(OCI_PKG, "../core");
const tempDirs = new TempDirs();
const base = baseRegistryForFile(ensureBusyboxImage, "kiln/busybox:1.35", { tempDirs });
const temp = (prefix: string) => tempDirs.make(prefix);

/** A user project with @kiln/core and @kiln/oci linked (no @kiln/docker: nothing could reach an engine). */
function linkedOciProject(): string {
  const project = temp("kiln-oci-layout-project-");
  writeFileSync(
    join(project, "package.json"),
    JSON.stringify({ name: "layout-fixture", private: true, type: "module", dependencies: { "@kiln/core": "*", "@kiln/oci": "*" } }),
  );
  mkdirSync(join(project, "node_modules/@kiln"), { recursive: true });
  symlinkSync(CORE_PKG, join(project, "node_modules/@kiln/core"));
  symlinkSync(OCI_PKG, join(project, "node_modules/@kiln/oci"));
  return project;
}

function run(
  command: string,
  args: string[],
  cwd: string,
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(command, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c) => (stdout += c));
    child.stderr.on("data", (c) => (stderr += c));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

const noEngineEnv = (home: string): NodeJS.ProcessEnv => ({
  ...process.env,
  DOCKER_HOST: "unix:///nonexistent/docker.sock",
  DOCKER_CONFIG: home,
  KILN_IMAGE_BUILDER: "",
  SOURCE_DATE_EPOCH: "",
});

describe("oci builder: registry oci:<dir> writes an OCI image layout", () => {
  it("kiln build with no Docker Engine reachable writes the layout; a second build finds it; skopeo loads it into docker and it runs", async () => {
    const project = linkedOciProject();
    mkdirSync(join(project, "src"));
    writeFileSync(join(project, "src", "hello.sh"), "#!/bin/sh\necho hello from the layout\n", { mode: 0o755 });
    writeFileSync(
      join(project, "spec.mjs"),
      `import { Image } from "@kiln/core";\nexport default Image.fromBase(${JSON.stringify(base.ref)}, { registry: "oci:./images", name: "hello" })` +
        `.withSourceFolder("src", "/app").withEnvVars({ MODE: "layout" }).withWorkdir("/app").clone({ platform: ["linux/amd64"] });\n`,
    );
    const home = temp("kiln-oci-layout-dockercfg-");
    writeFileSync(join(home, "config.json"), "{}");
    const env = noEngineEnv(home);
    const kiln = (args: string[]) => run(process.execPath, [join(CORE_PKG, "dist/cli/main.js"), ...args], project, env, 180_000);

    const first = await kiln(["build", "spec.mjs", "--json"]);
    expect(first.code, first.stderr).toBe(0);
    // stdout: the URI; stderr: the events as JSON lines.
    const events = (text: string) =>
      text
        .trim()
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events(first.stderr).find((e) => e.type === "build.start")).toMatchObject({ builder: "oci", dryRun: false });

    const layout = join(project, "images", "hello");
    expect(JSON.parse(readFileSync(join(layout, "oci-layout"), "utf8"))).toEqual({ imageLayoutVersion: "1.0.0" });
    const index = (await readLayoutIndex(layout))!;
    expect(index.manifests).toHaveLength(1);
    const tag = index.manifests[0]!.annotations![REF_NAME_ANNOTATION]!;
    expect(tag).toMatch(/^[0-9a-f]{32}$/);
    expect(first.stdout.trim()).toBe(`oci:./images/hello:${tag}`);
    expect(existsSync(blobPath(layout, index.manifests[0]!.digest))).toBe(true);
    expect(readdirSync(join(layout, "blobs", "sha256")).filter((f) => f.startsWith("."))).toEqual([]);

    const second = await kiln(["build", "spec.mjs", "--json"]);
    expect(second.code, second.stderr).toBe(0);
    expect(events(second.stderr).some((e) => e.type === "build.start")).toBe(false);
    expect(events(second.stderr).find((e) => e.type === "check.result" && e.result === "present")).toMatchObject({ checker: "oci-layout" });
    expect(second.stdout.trim()).toBe(`oci:./images/hello:${tag}`);
    expect((await readLayoutIndex(layout))!.manifests).toHaveLength(1);

    // The default registry (KILN_IMAGE_REGISTRY) may be a layout too.
    writeFileSync(
      join(project, "plain.mjs"),
      `import { Image } from "@kiln/core";\nexport default Image.fromBase(${JSON.stringify(base.ref)}, { name: "plain" }).withSourceFolder("src", "/app").clone({ platform: ["linux/amd64"] });\n`,
    );
    const plain = await run(
      process.execPath,
      [join(CORE_PKG, "dist/cli/main.js"), "build", "plain.mjs", "--json"],
      project,
      { ...env, KILN_IMAGE_REGISTRY: "oci:./defaults" },
      180_000,
    );
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stdout.trim()).toMatch(/^oci:\.\/defaults\/plain:[0-9a-f]{32}$/);
    expect((await readLayoutIndex(join(project, "defaults", "plain")))!.manifests).toHaveLength(1);

    const name = `kiln-oci-layout-test-${process.pid}`;
    const copied = await run("skopeo", ["copy", "--insecure-policy", `oci:${layout}:${tag}`, `docker-daemon:${name}:${tag}`], project, process.env, 120_000);
    expect(copied.code, copied.stderr).toBe(0);
    try {
      const out = await docker(["run", "--rm", "--network", "none", `${name}:${tag}`, "sh", "-c", './hello.sh; echo "MODE=$MODE"; pwd'], {
        timeoutMs: 120_000,
      });
      expect(out).toContain("hello from the layout");
      expect(out).toContain("MODE=layout");
      expect(out).toContain("/app");
    } finally {
      await docker(["image", "rm", "-f", `${name}:${tag}`]).catch(() => undefined);
    }
  }, 600_000);

  it("two platforms: one index tagged in index.json; the checker answers per platform and misses a deleted blob", async () => {
    const multi = await pushMultiArchBusybox(base.registry.host);
    const root = temp("kiln-oci-layout-multi-");
    const src = temp("kiln-oci-layout-src-");
    writeFileSync(join(src, "a.txt"), "a\n");
    const image = Image.fromBase(multi, { registry: `oci:${root}`, name: "team/multi" })
      .withSourceFolder(src, "/a")
      .clone({ platform: ["linux/amd64", "linux/arm64"] });
    const builder = new OciImageBuilder({ client: new RegistryClient({ useDockerConfig: false }), env: { ...process.env, SOURCE_DATE_EPOCH: "" } });
    const built = await builder.buildImage(image, {});
    const layout = join(root, "team", "multi");
    const index = (await readLayoutIndex(layout))!;
    expect(index.manifests).toEqual([
      expect.objectContaining({
        mediaType: "application/vnd.oci.image.index.v1+json",
        digest: built.digest,
        annotations: { [REF_NAME_ANNOTATION]: image.tag },
      }),
    ]);
    const top = JSON.parse(readFileSync(blobPath(layout, built.digest!), "utf8")) as {
      manifests: Array<{ digest: string; platform: { architecture: string } }>;
    };
    expect(top.manifests.map((m) => m.platform.architecture).sort()).toEqual(["amd64", "arm64"]);

    const checker = new OciLayoutImageChecker();
    const repository = `oci:${root}/team/multi`;
    expect(checker.answersFor(repository)).toBe(true);
    expect(await checker.imageExists(repository, image.tag, ["linux/amd64", "linux/arm64"])).toBe(`${repository}:${image.tag}`);
    expect(await checker.imageExists(repository, image.tag, ["linux/s390x" as never])).toBeNull();
    expect(await checker.imageExists(repository, "other-tag", [])).toBeNull();
    // The layout's answer, not a registry's: the registry checker and core's checkImage leave it alone.
    expect(new OciRegistryImageChecker(new RegistryClient({ useDockerConfig: false })).answersFor(repository)).toBe(false);
    expect(await new OciRegistryImageChecker(new RegistryClient({ useDockerConfig: false })).imageExists(repository, image.tag, [])).toBeNull();
    expect((await checkImage(`${repository}:${image.tag}`)).present).toBe(false);

    // A blob of the arm64 image gone: arm64 is absent, amd64 still there.
    const arm = top.manifests.find((m) => m.platform.architecture === "arm64")!;
    const armManifest = JSON.parse(readFileSync(blobPath(layout, arm.digest), "utf8")) as { layers: Array<{ digest: string }> };
    const amd = JSON.parse(readFileSync(blobPath(layout, top.manifests.find((m) => m.platform.architecture === "amd64")!.digest), "utf8")) as {
      layers: Array<{ digest: string }>;
    };
    const armOnly = armManifest.layers.find((l) => !amd.layers.some((a) => a.digest === l.digest))!;
    unlinkSync(blobPath(layout, armOnly.digest));
    expect(await checker.imageExists(repository, image.tag, ["linux/amd64"])).toBe(`${repository}:${image.tag}`);
    expect(await checker.imageExists(repository, image.tag, ["linux/arm64"])).toBeNull();
    // Building again restores the missing blob (the others are kept), and it is found again.
    await builder.buildImage(image, {});
    expect(await checker.imageExists(repository, image.tag, ["linux/arm64"])).toBe(`${repository}:${image.tag}`);
  }, 300_000);

  it("validates oci:<dir> registries and refuses an empty directory", () => {
    expect(Image.fromBase("busybox:1.35", { registry: "oci:./images/", name: "x" }).registry).toBe("oci:./images");
    expect(Image.fromBase("busybox:1.35", { registry: "oci:/abs/path", name: "x" }).registry).toBe("oci:/abs/path");
    expect(() => Image.fromBase("busybox:1.35", { registry: "oci:", name: "x" })).toThrow(/oci:<directory>/);
  });
});
