// DockerImageBuilder on the machine's real Docker Engine, with the real registry binary.
import { rm } from "node:fs/promises";
import { BuildFailedError, CancelledError, Image, RegistryClient, renderDockerfile } from "@kiln/core";
import {
  DockerCleanup,
  ensureBusyboxImage,
  ensureDebianPythonImage,
  inspectImage,
  runInImage,
  startPyIndex,
  startRegistry,
  uniqueName,
  type PyIndex,
  type TestRegistry,
} from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DockerImageBuilder } from "../src/builder.js";
import { LocalDockerImageChecker } from "../src/checkers.js";
import { LABEL_KILN_VERSION, LABEL_TAG_INPUTS } from "../src/provenance.js";
import { collector, tempTree } from "./helpers.js";

let registry: TestRegistry;
let pyIndex: PyIndex;
let busybox: string;
let python: string;
const cleanup = new DockerCleanup();
const dirs: string[] = [];

beforeAll(async () => {
  [busybox, python, registry, pyIndex] = await Promise.all([
    ensureBusyboxImage(),
    ensureDebianPythonImage(),
    startRegistry(),
    startPyIndex([
      { name: "kiln-demo", version: "1.2.3", requires: ["kiln-dep>=0.1"], source: "from kiln_dep import NAME\nVERSION = '1.2.3'\n" },
      { name: "kiln-dep", version: "0.1.0", source: "NAME = 'kiln-dep'\n" },
    ]),
  ]);
});

afterAll(async () => {
  await cleanup.run();
  await Promise.all([registry?.stop(), pyIndex?.close(), ...dirs.map((d) => rm(d, { recursive: true, force: true }))]);
});

describe("DockerImageBuilder (BuildKit) — a python image pushed to a registry", () => {
  it("installs apt packages from Debian's mirror and pip packages from a local index, copies sources with .dockerignore, sets env/workdir/user, and pushes", async () => {
    const src = await tempTree({
      "main.py": "print('hello from main')\n",
      "pkg/util.py": "X = 1\n",
      "secrets.env": "TOKEN=nope\n",
      "build/out.bin": "junk",
      ".dockerignore": "secrets.env\nbuild\n",
    });
    dirs.push(src);
    const indexHost = new URL(pyIndex.url).hostname;
    const image = Image.fromDebianBase({ baseImage: python, installer: "pip", registry: registry.host, name: uniqueName("kiln-py") })
      .withAptPackages("jq")
      .withPipPackages("kiln-demo==1.2.3", { indexUrl: pyIndex.url, extraArgs: ["--trusted-host", indexHost] })
      .withEnvVars({ MODE: "prod" })
      .withWorkdir("/app")
      .withDockerignore(`${src}/.dockerignore`)
      .withSourceFolder(src, "/app/src")
      .withUser("nobody");
    cleanup.image(image.uri);
    const c = collector();
    const result = await new DockerImageBuilder().buildImage(image, { onEvent: c.onEvent });

    expect(result.uri).toBe(image.uri);
    // The digest the builder read from the push stream is the one the registry serves.
    const head = await new RegistryClient().headManifest(image.uri);
    expect(result.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(head?.digest).toBe(result.digest);

    const steps = c.of("build.step").map((e) => e.step);
    expect(steps.some((s) => /RUN .*apt-get/.test(s))).toBe(true);
    expect(steps.some((s) => /pip/.test(s))).toBe(true);
    expect(c.of("build.log").some((e) => /Successfully installed .*kiln-demo-1\.2\.3/.test(e.line))).toBe(true);
    expect(c.of("push.progress").length).toBeGreaterThan(0);
    expect(c.of("push.done")[0]?.digest).toBe(result.digest);
    expect(pyIndex.requests.some((p) => p.endsWith("kiln_demo-1.2.3-py3-none-any.whl"))).toBe(true);

    const out = await runInImage(image.uri, [
      "sh",
      "-c",
      'python3 -c "import kiln_demo; print(kiln_demo.VERSION, kiln_demo.NAME)"; jq --version; echo "MODE=$MODE"; pwd; id -un; ls -A /app/src | sort | tr "\\n" " "',
    ]);
    const lines = out.trim().split("\n");
    expect(lines[0]).toBe("1.2.3 kiln-dep");
    expect(lines[1]).toMatch(/^jq-1\./);
    expect(lines.slice(2)).toEqual(["MODE=prod", "/app", "nobody", ".dockerignore main.py pkg"]);

    const inspected = await inspectImage(image.uri);
    expect(inspected.Config.Labels[LABEL_KILN_VERSION]).toMatch(/^\d+\.\d+\.\d+/);
    expect(inspected.Config.Labels[LABEL_TAG_INPUTS]).toMatch(/^sha256:[0-9a-f]{64}$/);
  });
});

describe("configuration copied before an install is in place when it runs", () => {
  it("a pip.conf copied to /etc before withPipPackages points pip at the local index (no index option given)", async () => {
    const conf = await tempTree({
      "pip.conf": `[global]\nindex-url = ${pyIndex.url}\ntrusted-host = ${new URL(pyIndex.url).hostname}\n`,
      "app/main.py": "print('app')\n",
    });
    dirs.push(conf);
    const image = Image.fromDebianBase({ baseImage: python, installer: "pip", name: uniqueName("kiln-pipconf") })
      .withSourceFolder(`${conf}/app`, "/srv/app")
      .withSourceFile(`${conf}/pip.conf`, "/etc/pip.conf")
      .withPipPackages("kiln-dep==0.1.0");
    // The rendering: the config copy stays before the install; the application source moves after it.
    const copies = renderDockerfile(image, { buildkit: false })
      .split("\n")
      .filter((l) => /^(COPY|RUN)/.test(l));
    expect(copies.map((l) => l.split(" ")[0])).toEqual(["COPY", "RUN", "COPY"]);
    expect(copies[0]).toContain("/etc/pip.conf");
    expect(copies[2]).toContain("/srv/app");
    cleanup.image(image.uri);
    const before = pyIndex.requests.length;
    await new DockerImageBuilder({ buildkit: false }).buildImage(image, {});
    // Without the file in place pip would have asked pypi.org (unreachable here) and failed.
    expect(pyIndex.requests.slice(before).some((p) => p.endsWith("kiln_dep-0.1.0-py3-none-any.whl"))).toBe(true);
    const out = await runInImage(image.uri, ["python3", "-c", "import kiln_dep; print(kiln_dep.NAME)"]);
    expect(out.trim()).toBe("kiln-dep");
  });
});

describe("DockerImageBuilder — classic builder, registry-less image kept locally", () => {
  it("builds with the classic builder, keeps it local (no push) and the local checker finds it per architecture", async () => {
    const image = Image.fromBase(busybox, { name: uniqueName("kiln-classic") })
      .withCommands("echo built-by-classic > /classic.txt")
      .withEnvVars({ GREETING: "hi there" });
    cleanup.image(image.uri);
    const c = collector();
    const result = await new DockerImageBuilder({ buildkit: false }).buildImage(image, { onEvent: c.onEvent });
    expect(result).toEqual({ uri: image.uri });
    expect(c.of("push.progress")).toHaveLength(0);
    expect(c.of("build.step").map((e) => e.step)).toContain(`FROM ${busybox}`);
    expect((await runInImage(image.uri, ["sh", "-c", 'cat /classic.txt; echo "$GREETING"'])).trim()).toBe("built-by-classic\nhi there");

    const checker = new LocalDockerImageChecker();
    expect(await checker.imageExists(image.name, image.tag, ["linux/amd64"])).toBe(image.uri);
    expect(await checker.imageExists(image.name, image.tag, ["linux/amd64", "linux/arm64"])).toBeNull();
    expect(await checker.imageExists(image.name, "0".repeat(32), ["linux/amd64"])).toBeNull();
    // A registry image is never answered from the local daemon.
    expect(await checker.imageExists(`${registry.host}/${image.name}`, image.tag, ["linux/amd64"])).toBeNull();
  });
});

describe("DockerImageBuilder — its env option, not the process environment, says where the engine is", () => {
  it("builds on the unix socket its env names while process.env.DOCKER_HOST points at a dead tcp port", async () => {
    const image = Image.fromBase(busybox, { name: uniqueName("kiln-env-host") }).withCommands("echo env > /env.txt");
    cleanup.image(image.uri);
    const saved = process.env.DOCKER_HOST;
    process.env.DOCKER_HOST = "tcp://127.0.0.1:9";
    try {
      const result = await new DockerImageBuilder({ env: { DOCKER_HOST: "unix:///var/run/docker.sock" }, buildkit: false }).buildImage(image, {});
      expect(result).toEqual({ uri: image.uri });
    } finally {
      if (saved === undefined) delete process.env.DOCKER_HOST;
      else process.env.DOCKER_HOST = saved;
    }
    expect((await runInImage(image.uri, ["cat", "/env.txt"])).trim()).toBe("env");
  });
});

describe("DockerImageBuilder — fromDockerfile", () => {
  it("builds a user Dockerfile with build args and its context's .dockerignore, plus Kiln layers on top", async () => {
    const ctx = await tempTree({
      Dockerfile: `FROM ${busybox}\nARG FLAVOUR=plain\nCOPY . /ctx\nRUN echo "flavour=$FLAVOUR" > /flavour.txt\n`,
      "keep.txt": "kept\n",
      "ignored.log": "no\n",
      ".dockerignore": "*.log\n",
    });
    dirs.push(ctx);
    const image = Image.fromDockerfile(`${ctx}/Dockerfile`, {
      buildArgs: { FLAVOUR: "spicy" },
      registry: registry.host,
      name: uniqueName("kiln-df"),
    }).withEnvVars({
      ADDED: "by-kiln",
    });
    cleanup.image(image.uri);
    const result = await new DockerImageBuilder().buildImage(image, {});
    expect(result.digest).toBe((await new RegistryClient().headManifest(image.uri))?.digest);
    const out = await runInImage(image.uri, ["sh", "-c", 'cat /flavour.txt; echo "$ADDED"; ls /ctx']);
    const [flavour, added, ...listing] = out.trim().split("\n");
    expect([flavour, added]).toEqual(["flavour=spicy", "by-kiln"]);
    // The context's .dockerignore applied: *.log left out, the rest copied by the user's `COPY . /ctx`.
    expect(listing).toEqual(expect.arrayContaining(["Dockerfile", "keep.txt"]));
    expect(listing).not.toContain("ignored.log");
  });
});

describe("DockerImageBuilder — failures, cancellation, dry run", () => {
  it("a failing RUN fails with BuildFailedError naming the step and carrying its log tail", async () => {
    const image = Image.fromBase(busybox, { name: uniqueName("kiln-fail") }).withCommands("echo before-the-failure && exit 3");
    const c = collector();
    const error = await new DockerImageBuilder().buildImage(image, { onEvent: c.onEvent }).catch((e) => e);
    expect(BuildFailedError.isInstance(error)).toBe(true);
    expect(error.details.step).toMatch(/RUN .*exit 3/);
    expect(error.details.logTail).toContain("before-the-failure");
    expect(error.message).toMatch(/exit code: 3/);
    expect(error.hint).toBeTruthy();
  });

  it("an AbortSignal cancels a running build promptly with CancelledError and tags nothing", async () => {
    const image = Image.fromBase(busybox, { name: uniqueName("kiln-cancel") }).withCommands("echo started-sleeping && sleep 60");
    cleanup.image(image.uri);
    const controller = new AbortController();
    const started = Date.now();
    const building = new DockerImageBuilder().buildImage(image, {
      signal: controller.signal,
      onEvent: (e) => {
        if (e.type === "build.log" && e.line.includes("started-sleeping")) controller.abort();
      },
    });
    const error = await building.catch((e) => e);
    expect(CancelledError.isInstance(error)).toBe(true);
    expect(Date.now() - started).toBeLessThan(30_000);
    const checker = new LocalDockerImageChecker();
    expect(await checker.imageExists(image.name, image.tag)).toBeNull();
  });

  it("a dry run makes no daemon call at all (works with no daemon) and returns the URI", async () => {
    const image = Image.fromBase(busybox, { registry: registry.host, name: uniqueName("kiln-dry") }).withCommands("true");
    const builder = new DockerImageBuilder({ env: { ...process.env, DOCKER_HOST: "unix:///nonexistent/docker.sock" } });
    expect(await builder.buildImage(image, { dryRun: true })).toEqual({ uri: image.uri });
    expect(await new RegistryClient().headManifest(image.uri)).toBeNull();
  });
});
