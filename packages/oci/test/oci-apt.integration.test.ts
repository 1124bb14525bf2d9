/**
 * withAptPackages with the oci builder: this machine's apt resolves against the base image's own
 * dpkg status (a debootstrap bookworm rootfs with a merged /usr, made locally and pushed to a loopback
 * registry) and Debian's mirror; the .debs are unpacked into one layer with their dpkg status and
 * info files. Nothing runs in the image while building and no Docker Engine is reachable from the
 * builder; `docker run` of what was pushed then runs jq, asks dpkg about it and looks at /sbin.
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import tarStream from "tar-stream";
import {
  BuildFailedError,
  CannotBuildError,
  Image,
  RegistryClient,
  build,
  init,
  registerImageBuilder,
  unregisterImageBuilder,
  type ImageBuilder,
} from "@kiln/core";
import { docker, ensureDebianPythonImage, type TestRegistry } from "@kiln/test-utils";
import { MaintainerScriptError } from "../src/debianScripts.js";
import { NO_ENGINE_ENV, buildRecordingSteps, ociBuilder, registryWithBase, runPulled } from "./helpers.js";

let registry: TestRegistry;
let baseRef: string;
const tempDirs: string[] = [];

const client = () => new RegistryClient({ useDockerConfig: false });
// A layer-digest cache of this run only (the machine's shared one may know layers from earlier runs).
const layerCache = mkdtempSync(join(tmpdir(), "kiln-oci-apt-layers-"));
const builder = (env: NodeJS.ProcessEnv = NO_ENGINE_ENV) => ociBuilder(layerCache, env);

function declare(name: string, ...packages: string[]): Image {
  return Image.fromBase(baseRef)
    .withAptPackages(...packages)
    .clone({ registry: registry.host, name, platform: ["linux/amd64"] });
}

/** jq in one apt layer, libcap2-bin (files under /sbin in its .deb) in a second one. */
function declareTwoLayers(name: string): Image {
  return Image.fromBase(baseRef)
    .withAptPackages("jq")
    .withAptPackages("libcap2-bin")
    .clone({ registry: registry.host, name, platform: ["linux/amd64"] });
}

/** The entries of one of the image's layers (`fromEnd` 1: the last), as the registry holds it. */
async function layerEntries(uri: string, fromEnd: number): Promise<Map<string, { type: string; linkname?: string }>> {
  const manifest = (await client().getManifest(uri))!.manifest as { layers: Array<{ digest: string }> };
  const blob = (await client().getBlob(uri, manifest.layers.at(-fromEnd)!.digest))!;
  const extract = tarStream.extract();
  const out = new Map<string, { type: string; linkname?: string }>();
  const done = (async () => {
    for await (const entry of extract) {
      out.set(entry.header.name, { type: entry.header.type, ...(entry.header.linkname ? { linkname: entry.header.linkname } : {}) });
      entry.resume();
    }
  })();
  extract.end(gunzipSync(blob));
  await done;
  return out;
}

beforeAll(async () => {
  ({ registry, baseRef } = await registryWithBase(await ensureDebianPythonImage(), "kiln/debian:bookworm", 300_000));
}, 600_000);

afterAll(async () => {
  await registry?.stop();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  rmSync(layerCache, { recursive: true, force: true });
});

describe("oci builder installs Debian packages, running nothing in the image", () => {
  it("withAptPackages jq, then libcap2-bin: jq runs, dpkg knows both (the second layer's status keeps the first's), /sbin stays the base's symlink to usr/sbin; same digest twice", async () => {
    const image = declareTwoLayers("kiln/apt-oci");
    expect(builder().canBuild(image)).toEqual({ ok: true });
    const { built, steps } = await buildRecordingSteps(builder(), image);
    expect(steps).toEqual(["apt-get install jq", "apt-get install libcap2-bin"]);

    const jqLayer = await layerEntries(image.uri, 2);
    expect(jqLayer.get("usr/bin/jq")?.type).toBe("file");
    expect(jqLayer.get("var/lib/dpkg/info/libjq1:amd64.list")?.type).toBe("file"); // Multi-Arch: same
    expect(jqLayer.get("var/lib/dpkg/info/jq.list")?.type).toBe("file");
    expect(jqLayer.get("var/lib/dpkg/status")?.type).toBe("file");
    // The second layer: files under usr/sbin (the .deb says /sbin/…), no `sbin` entry that would replace the symlink.
    const capLayer = await layerEntries(image.uri, 1);
    expect(capLayer.get("usr/sbin/capsh")?.type).toBe("file");
    expect(capLayer.has("sbin")).toBe(false);
    expect([...capLayer.keys()].some((name) => name.startsWith("sbin/"))).toBe(false);
    expect(capLayer.has("usr/bin/jq")).toBe(false);
    expect(capLayer.get("var/lib/dpkg/info/libcap2-bin.list")?.type).toBe("file");

    // The second build reads the base's view and apt's lists from the caches the first one filled.
    expect(readdirSync(join(layerCache, "debian-bases")).filter((f) => f.endsWith(".json"))).toHaveLength(1);
    expect(readdirSync(join(layerCache, "apt-lists")).filter((f) => !f.startsWith("."))).toHaveLength(1);
    const again = await builder().buildImage(declareTwoLayers("kiln/apt-oci-again"), {});
    expect(again.digest).toBe(built.digest);

    const out = await runPulled(image.uri, [
      "sh",
      "-c",
      [
        "jq --version",
        'echo \'{"a":{"b":42}}\' | jq -c .a',
        "dpkg -s jq | grep '^Status:'",
        "dpkg -s libjq1 | grep -E '^(Status|Multi-Arch):' | tr '\\n' ' '; echo",
        "dpkg -L libcap2-bin | grep -x /sbin/capsh",
        "dpkg -S /usr/lib/x86_64-linux-gnu/libjq.so.1 || true",
        "echo sbin=$(readlink /sbin)",
        "/sbin/getcap -v /usr/bin/jq",
        // Not in the base's ld.so.cache, found on the default multiarch path all the same.
        "echo cached=$(ldconfig -p | grep -c 'libjq.so.1' || true)",
        "dpkg --audit && echo audit-clean",
        "dpkg -s python3 | grep '^Status:' | sed 's/^/python3 /'",
      ].join("; "),
    ]);
    expect(out).toMatch(/^jq-1\.\d/m);
    expect(out).toContain('{"b":42}');
    expect(out).toContain("Status: install ok installed");
    expect(out).toMatch(/Status: install ok installed Multi-Arch: same/);
    expect(out).toContain("/sbin/capsh");
    expect(out).toContain("libjq1:amd64: /usr/lib/x86_64-linux-gnu/libjq.so.1");
    expect(out).toContain("sbin=usr/sbin");
    expect(out).toContain("/usr/bin/jq");
    expect(out).toContain("cached=0");
    expect(out).toContain("audit-clean");
    expect(out).toContain("python3 Status: install ok installed"); // the base's packages are still there
  }, 600_000);

  it("a package whose postinst calls update-alternatives (netcat-openbsd): MaintainerScriptError naming it and the command; nothing pushed", async () => {
    const image = declare("kiln/apt-forbidden", "netcat-openbsd");
    expect(builder().canBuild(image)).toEqual({ ok: true }); // known only once the package is opened
    const error = await builder()
      .buildImage(image, {})
      .catch((e: unknown) => e);
    expect(MaintainerScriptError.isInstance(error)).toBe(true);
    expect((error as Error).message).toContain("netcat-openbsd");
    expect((error as Error).message).toContain("postinst");
    expect((error as Error).message).toContain("update-alternatives");
    expect((error as { details?: Record<string, unknown> }).details).toMatchObject({
      package: "netcat-openbsd:amd64",
      command: "update-alternatives",
      script: "postinst",
    });
    expect((error as { hint?: string }).hint).toMatch(/docker.*buildkit/);
    expect(await client().headManifest(image.uri)).toBeNull();
  }, 300_000);

  it("no apt on PATH: canBuild says so, buildImage is a CannotBuildError, and the engine with no builder configured takes another one", async () => {
    const emptyPath = mkdtempSync(join(tmpdir(), "kiln-oci-noapt-"));
    tempDirs.push(emptyPath);
    const noApt = builder({ ...NO_ENGINE_ENV, PATH: emptyPath });
    const image = declare("kiln/apt-noapt", "jq");
    const answer = noApt.canBuild(image);
    expect(answer.ok).toBe(false);
    expect((answer as { reason: string }).reason).toContain("withAptPackages jq");
    expect((answer as { reason: string }).reason).toContain("apt-get");
    expect((answer as { reason: string }).reason).toContain("dpkg-deb");
    const error = await noApt.buildImage(image, {}).catch((e: unknown) => e);
    expect(CannotBuildError.isInstance(error)).toBe(true);
    expect((error as Error).message).toContain("apt-get");
    // The same image without apt layers is still the oci builder's.
    expect(noApt.canBuild(Image.fromBase(baseRef).clone({ registry: registry.host, name: "kiln/plain" }))).toEqual({ ok: true });

    const project = mkdtempSync(join(tmpdir(), "kiln-oci-apt-project-"));
    tempDirs.push(project);
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "fixture", private: true }));
    const dockerCalls: string[] = [];
    const fakeDocker: ImageBuilder = { buildImage: async (img) => (dockerCalls.push(img.uri), { uri: img.uri }) };
    registerImageBuilder("docker", fakeDocker);
    registerImageBuilder("oci", noApt);
    init({ projectDir: project });
    try {
      expect(await build(image, { projectDir: project })).toMatchObject({ builder: "docker" });
      expect(dockerCalls).toEqual([image.uri]);
    } finally {
      unregisterImageBuilder("docker");
      unregisterImageBuilder("oci");
      init({});
    }
  }, 120_000);

  it("a base whose dpkg status (in its top layer) holds an older libjq1: installing jq would upgrade it, which is refused naming it; nothing pushed", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kiln-oci-apt-stale-"));
    tempDirs.push(dir);
    const stanza =
      "\\nPackage: libjq1\\nStatus: install ok installed\\nArchitecture: amd64\\nMulti-Arch: same\\nSource: jq\\nVersion: 1.6-2.1\\nMaintainer: Kiln <kiln@example.invalid>\\nDescription: stale stand-in\\n";
    writeFileSync(join(dir, "Dockerfile"), `FROM ${await ensureDebianPythonImage()}\nRUN printf '${stanza}' >> /var/lib/dpkg/status\n`);
    const staleRef = `${registry.host}/kiln/debian-stale:bookworm`;
    await docker(["build", "-q", "-t", staleRef, dir], { timeoutMs: 300_000 });
    await docker(["push", staleRef], { timeoutMs: 300_000 });
    await docker(["image", "rm", staleRef]).catch(() => undefined);
    const image = Image.fromBase(staleRef)
      .withAptPackages("jq")
      .clone({ registry: registry.host, name: "kiln/apt-upgrade", platform: ["linux/amd64"] });
    const error = await builder()
      .buildImage(image, {})
      .catch((e: unknown) => e);
    expect(BuildFailedError.isInstance(error)).toBe(true);
    expect(MaintainerScriptError.isInstance(error)).toBe(false);
    expect((error as Error).message).toMatch(/libjq1:amd64 1\.6-2\.1 → \S+/);
    expect((error as Error).message).toContain("only adds packages");
    expect(await client().headManifest(image.uri)).toBeNull();
  }, 600_000);

  it("a copy into /etc/apt before withAptPackages: canBuild refuses (the base's sources are used as they are)", () => {
    const dir = mkdtempSync(join(tmpdir(), "kiln-oci-apt-src-"));
    tempDirs.push(dir);
    writeFileSync(join(dir, "extra.list"), "deb http://deb.debian.org/debian bookworm contrib\n");
    const image = Image.fromBase(baseRef)
      .withSourceFile(join(dir, "extra.list"), "/etc/apt/sources.list.d/extra.list")
      .withAptPackages("jq")
      .clone({ registry: registry.host, name: "kiln/apt-config-copy" });
    const answer = builder().canBuild(image);
    expect(answer.ok).toBe(false);
    expect((answer as { reason: string }).reason).toMatch(/layers\[0\].*apt's or dpkg's configuration.*layers\[1\]/);
  });
});
