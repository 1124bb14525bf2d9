/**
 * A Python image for linux/arm64 built by the oci builder runs: the base is a Debian bookworm
 * python3.11 rootfs for arm64 (test-utils' arm64PythonRootfs: Debian's arm64 packages unpacked, made
 * once per machine with no emulation), pushed to a loopback registry; wheels come from test-utils'
 * local package index, resolved on this (amd64) machine for manylinux2014_aarch64 / cp311. Then
 * `docker run --platform linux/arm64` — under qemu-user-static, binfmt enabled as
 * scripts/start-services.sh does — imports the packages and runs the console script. The image also
 * carries a file layer bigger than a gzip block, so Docker unpacks a block-compressed layer too.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Image } from "@kiln/core";
import { docker, ensureArm64Emulation, pushArm64PythonBase, startPyIndex, startRegistry, type PyIndex, type TestRegistry } from "@kiln/test-utils";
import { GZIP_OPTIONS } from "../src/layerFile.js";
import { NO_ENGINE_ENV, ociBuilder } from "./helpers.js";

let registry: TestRegistry;
let index: PyIndex;
let baseRef: string;
const tempDirs: string[] = [];
const layerCache = mkdtempSync(join(tmpdir(), "kiln-oci-arm64-layers-"));
tempDirs.push(layerCache);
// No Docker Engine reachable from the builder: it never needs one.
const builder = () => ociBuilder(layerCache, NO_ENGINE_ENV);

beforeAll(async () => {
  await ensureArm64Emulation();
  registry = await startRegistry({ auth: "none" });
  baseRef = await pushArm64PythonBase(registry.host);
  index = await startPyIndex([
    {
      name: "kiln-demo",
      version: "1.0",
      source: "import platform\nVERSION = '1.0'\ndef main():\n    print('demo script ran on', platform.machine())\n",
      consoleScripts: { "kiln-demo": "kiln_demo:main" },
      requires: ["kiln-dep"],
    },
    { name: "kiln-dep", version: "2.0" },
  ]);
}, 600_000);

afterAll(async () => {
  await index?.close();
  await registry?.stop();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

describe("oci builder, linux/arm64 Python image", () => {
  it("docker run --platform linux/arm64 (qemu): import works and the console script runs", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kiln-oci-arm64-src-"));
    tempDirs.push(dir);
    // Half random, half text, over several gzip blocks.
    const data = Buffer.concat([randomBytes(GZIP_OPTIONS.blockBytes * 2), Buffer.from("kiln arm64 ".repeat(200_000))]);
    writeFileSync(join(dir, "data.bin"), data);
    const pip = { indexUrl: index.url, extraArgs: ["--trusted-host", index.host] };
    const image = Image.fromDebianBase({ pythonVersion: [3, 11], baseImage: baseRef, installer: "pip", name: "kiln/py-arm64" })
      .withPipPackages("kiln-demo==1.0", pip)
      .withSourceFile(join(dir, "data.bin"), "/data/data.bin")
      .clone({ registry: registry.host, platform: ["linux/arm64"] });
    expect(builder().canBuild(image)).toEqual({ ok: true });
    const built = await builder().buildImage(image, {});
    expect(built.digest).toMatch(/^sha256:[0-9a-f]{64}$/);

    await docker(["pull", "--platform", "linux/arm64", image.uri], { timeoutMs: 180_000 });
    try {
      expect((await docker(["image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", image.uri])).trim()).toBe("linux/arm64");
      const out = await docker(
        [
          "run",
          "--rm",
          "--platform",
          "linux/arm64",
          "--network",
          "none",
          image.uri,
          "sh",
          "-c",
          [
            "uname -m",
            "head -1 /usr/local/bin/kiln-demo",
            "kiln-demo",
            "python3 -c 'import kiln_demo, kiln_dep; print(\"imported\", kiln_demo.__file__, kiln_demo.VERSION, kiln_dep.VERSION)'",
            "sha256sum /data/data.bin",
          ].join("; "),
        ],
        { timeoutMs: 180_000 },
      );
      expect(out).toContain("aarch64");
      expect(out).toContain("#!/usr/bin/python3.11");
      expect(out).toContain("demo script ran on aarch64");
      expect(out).toContain("imported /usr/local/lib/python3.11/dist-packages/kiln_demo/__init__.py 1.0 2.0");
      expect(out).toContain(createHash("sha256").update(data).digest("hex"));
    } finally {
      await docker(["image", "rm", "-f", image.uri]).catch(() => undefined);
    }
  }, 600_000);
});
