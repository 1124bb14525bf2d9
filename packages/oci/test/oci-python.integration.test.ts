/**
 * withPipPackages / withRequirements with the oci builder: wheels resolved on this machine by pip for
 * the image's platform and Python, from a package index the test serves (test-utils' pyIndex), laid
 * into a Debian python 3.11 base (made locally with debootstrap, pushed to a loopback registry).
 * Nothing runs in the image while building; `docker run` then imports the packages, runs the console
 * script, and pip in the image sees (and can uninstall) what was installed.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BuildFailedError, Image, RegistryClient } from "@kiln/core";
import { ensureDebianPythonImage, startPyIndex, type PyIndex, type TestRegistry } from "@kiln/test-utils";
import { pipArguments, rewriteShebang } from "../src/pythonPackages.js";
import { pythonTargetOf } from "../src/pythonTarget.js";
import { NO_ENGINE_ENV, buildRecordingSteps, ociBuilder, registryWithBase, runPulled } from "./helpers.js";

let registry: TestRegistry;
let index: PyIndex;
let baseRef: string;
const tempDirs: string[] = [];

const client = () => new RegistryClient({ useDockerConfig: false });
// No Docker Engine reachable from the builder: it never needs one.
// A layer-digest cache of this run only: the machine's shared one may know these layers from an earlier run.
const layerCache = mkdtempSync(join(tmpdir(), "kiln-oci-python-layers-"));
const builder = () => ociBuilder(layerCache, NO_ENGINE_ENV);

function appDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "kiln-oci-py-"));
  tempDirs.push(dir);
  writeFileSync(join(dir, "hello.py"), "import kiln_demo\nprint('app sees', kiln_demo.VERSION)\n");
  writeFileSync(join(dir, "requirements.txt"), "kiln-extra==0.3\n");
  return dir;
}

function declare(dir: string, name: string): Image {
  const pip = { indexUrl: index.url, extraArgs: ["--trusted-host", index.host] };
  return Image.fromDebianBase({ pythonVersion: [3, 11], baseImage: baseRef, installer: "pip", name })
    .withPipPackages("kiln-demo==1.0", pip)
    .withRequirements(join(dir, "requirements.txt"), pip)
    .withSourceFile(join(dir, "hello.py"), "/app/hello.py")
    .clone({ registry: registry.host, platform: ["linux/amd64"] });
}

beforeAll(async () => {
  ({ registry, baseRef } = await registryWithBase(await ensureDebianPythonImage(), "kiln/python:3.11-debian", 300_000));
  index = await startPyIndex([
    {
      name: "kiln-demo",
      version: "1.0",
      source: "VERSION = '1.0'\ndef main():\n    print('demo script ran')\n",
      consoleScripts: { "kiln-demo": "kiln_demo:main" },
      requires: ["kiln-dep"],
    },
    { name: "kiln-dep", version: "2.0" },
    { name: "kiln-extra", version: "0.3" },
  ]);
}, 600_000);

afterAll(async () => {
  await index?.close();
  await registry?.stop();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  rmSync(layerCache, { recursive: true, force: true });
});

describe("oci builder installs Python packages from wheels, running nothing in the image", () => {
  it("withPipPackages + withRequirements: the image imports them, runs the console script, pip in the image knows them; same digest twice", async () => {
    const dir = appDir();
    const image = declare(dir, "kiln/py-oci");
    expect(builder().canBuild(image)).toEqual({ ok: true });
    const { built, steps } = await buildRecordingSteps(builder(), image);
    expect(steps).toEqual(["pip install kiln-demo==1.0", "pip install -r requirements.txt", "COPY sourceFile -> /app/hello.py"]);
    // pip on this machine fetched the wheels (dependency included) from the index.
    expect(index.requests).toEqual(
      expect.arrayContaining(["/files/kiln_demo-1.0-py3-none-any.whl", "/files/kiln_dep-2.0-py3-none-any.whl", "/files/kiln_extra-0.3-py3-none-any.whl"]),
    );

    const again = await builder().buildImage(declare(dir, "kiln/py-oci-again"), {});
    expect(again.digest).toBe(built.digest);

    const out = await runPulled(image.uri, [
      "sh",
      "-c",
      [
        'echo "pyc=$(find /usr/local/lib/python3.11 -name "*.pyc" | wc -l)"',
        "head -1 /usr/local/bin/kiln-demo",
        "kiln-demo",
        "python3 -c 'import kiln_demo, kiln_dep, kiln_extra; print(kiln_demo.__file__, kiln_dep.VERSION, kiln_extra.VERSION)'",
        "python3 /app/hello.py",
        "cat /opt/kiln/requirements/1/requirements.txt",
        "python3 -m pip show kiln-demo | grep -E '^(Name|Location)'",
        "python3 -m pip uninstall -y -q kiln-demo && test ! -e /usr/local/bin/kiln-demo && echo script-removed",
      ].join("; "),
    ]);
    expect(out).toContain("pyc=0");
    expect(out).toContain("#!/usr/bin/python3.11");
    expect(out).toContain("demo script ran");
    expect(out).toContain("/usr/local/lib/python3.11/dist-packages/kiln_demo/__init__.py 2.0 0.3");
    expect(out).toContain("app sees 1.0");
    expect(out).toContain("kiln-extra==0.3");
    expect(out).toContain("Location: /usr/local/lib/python3.11/dist-packages");
    expect(out).toContain("script-removed");
  }, 600_000);

  it("a package with no wheel for the platform: an error naming it and the platform, hinting at a builder that runs steps; nothing pushed", async () => {
    const image = Image.fromDebianBase({ pythonVersion: [3, 11], baseImage: baseRef, installer: "pip", name: "kiln/py-nowheel" })
      .withPipPackages("kiln-sdist-only", { indexUrl: index.url, extraArgs: ["--trusted-host", index.host] })
      .clone({ registry: registry.host, platform: ["linux/amd64"] });
    const error = await builder()
      .buildImage(image, {})
      .catch((e: unknown) => e);
    expect(BuildFailedError.isInstance(error)).toBe(true);
    expect((error as Error).message).toContain("kiln-sdist-only");
    expect((error as Error).message).toContain("linux/amd64");
    expect((error as Error).message).toContain("manylinux2014_x86_64");
    expect((error as { hint?: string }).hint).toContain('builder: "docker"');
    expect(await client().headManifest(image.uri)).toBeNull();
  }, 300_000);
});

describe("where Python packages go", () => {
  it("an official python image (PYTHON_VERSION in its env): /usr/local site-packages and interpreter", () => {
    const target = pythonTargetOf(
      Image.fromBase("python:3.12-slim", { name: "x" }).spec,
      { config: { Env: ["PATH=/usr/local/bin:/usr/bin", "PYTHON_VERSION=3.12.4"] } },
      "python:3.12-slim",
    );
    expect(target).toEqual({
      version: [3, 12],
      interpreter: "/usr/local/bin/python3.12",
      siteDir: "/usr/local/lib/python3.12/site-packages",
      scriptsDir: "/usr/local/bin",
      flavour: "official",
    });
  });
  it("Debian's python3 (no PYTHON_VERSION, version declared): dist-packages, /usr/bin interpreter; neither known → error; disagreement → error", () => {
    const debian = Image.fromDebianBase({ pythonVersion: [3, 11], baseImage: "debian-python:12", name: "x" }).spec;
    expect(pythonTargetOf(debian, { config: { Env: ["PATH=/usr/bin"] } }, "debian-python:12")).toMatchObject({
      interpreter: "/usr/bin/python3.11",
      siteDir: "/usr/local/lib/python3.11/dist-packages",
      flavour: "debian",
    });
    expect(() => pythonTargetOf(Image.fromBase("debian:12", { name: "x" }).spec, { config: {} }, "debian:12")).toThrow(/cannot tell which Python/);
    expect(() => pythonTargetOf(debian, { config: { Env: ["PYTHON_VERSION=3.12.1"] } }, "b")).toThrow(/has Python 3.12/);
  });
  it("pip's command line: the platform's manylinux2014 tag, the image's Python and ABI, wheels only, no .pyc, the spec's index options", () => {
    const target = {
      version: [3, 11] as [number, number],
      interpreter: "/usr/bin/python3.11",
      siteDir: "/usr/local/lib/python3.11/dist-packages",
      scriptsDir: "/usr/local/bin",
      flavour: "debian" as const,
    };
    const layer = {
      kind: "pipPackages" as const,
      packages: ["numpy==2.0.0"],
      indexUrl: "https://pypi.example/simple",
      extraIndexUrls: ["https://extra.example/simple"],
      pre: true,
      extraArgs: ["--trusted-host", "pypi.example"],
    };
    const args = pipArguments({ layer, target, platform: "linux/arm64", dir: "/scratch/pip" });
    expect(args.join(" ")).toBe(
      "-m pip install --isolated --disable-pip-version-check --no-input --no-compile --target /scratch/pip --platform manylinux2014_aarch64 --python-version 3.11 " +
        "--implementation cp --abi cp311 --only-binary=:all: --index-url https://pypi.example/simple --extra-index-url https://extra.example/simple --pre --trusted-host pypi.example -- numpy==2.0.0",
    );
    expect(
      pipArguments({
        layer: { kind: "requirements", hostPath: "/r.txt", name: "r.txt" },
        requirementsFile: "/scratch/r.txt",
        target,
        platform: "linux/amd64",
        dir: "/d",
      }).slice(-3),
    ).toEqual(["--only-binary=:all:", "-r", "/scratch/r.txt"]);
  });
  it("console-script shebangs: the host interpreter (or pip's /bin/sh trampoline) becomes the image's", () => {
    expect(rewriteShebang(Buffer.from("#!/root/.pyenv/versions/3.11.7/bin/python3\nimport sys\n"), "/usr/local/bin/python3.11").toString()).toBe(
      "#!/usr/local/bin/python3.11\nimport sys\n",
    );
    expect(rewriteShebang(Buffer.from("#!/bin/sh\n'''exec' \"/very/long/python3\" \"$0\" \"$@\"\n' '''\nimport sys\n"), "/usr/bin/python3.11").toString()).toBe(
      "#!/usr/bin/python3.11\nimport sys\n",
    );
    expect(rewriteShebang(Buffer.from("#!/bin/sh\necho hi\n"), "/usr/bin/python3.11").toString()).toBe("#!/bin/sh\necho hi\n");
  });
});
