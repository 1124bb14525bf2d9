/**
 * OciLayoutImageChecker (`oci-layout`) through @kiln/core/testing's checker conformance suite, on a
 * real OCI image layout the oci builder writes (`registry: "oci:<dir>"`, its busybox base read from a
 * loopback registry): the image is found for its platform, an absent tag and a platform it lacks are
 * null, and a layout whose index.json cannot be read throws instead of answering. The checker reads
 * files only (no request to abort mid-way), so the suite gets no `hanging` case.
 */
import { mkdtempSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Image } from "@kiln/core";
import { RegistryClient } from "@kiln/core/plugin";
import { describeCheckerConformance } from "@kiln/core/testing";
import { docker, ensureBusyboxImage, startRegistry } from "@kiln/test-utils";
import { OciImageBuilder, OciLayoutImageChecker } from "../src/index.js";

describeCheckerConformance("OciLayoutImageChecker", {
  create: async () => {
    const dirs: string[] = [];
    const temp = (prefix: string) => {
      const dir = realpathSync(mkdtempSync(join(tmpdir(), prefix)));
      dirs.push(dir);
      return dir;
    };
    const registry = await startRegistry({ auth: "none" });
    const cleanup = async () => {
      await registry.stop();
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    };
    try {
      const baseRef = `${registry.host}/kiln/busybox:1.35`;
      await docker(["tag", await ensureBusyboxImage(), baseRef]);
      await docker(["push", baseRef], { timeoutMs: 120_000 });
      await docker(["image", "rm", baseRef]).catch(() => undefined);

      const root = temp("kiln-oci-layout-conformance-");
      const src = temp("kiln-oci-layout-conformance-src-");
      writeFileSync(join(src, "a.txt"), "a\n");
      const image = Image.fromBase(baseRef, { registry: `oci:${root}`, name: "team/app" })
        .withSourceFolder(src, "/a")
        .clone({ platform: ["linux/amd64"] });
      const builder = new OciImageBuilder({
        client: new RegistryClient({ useDockerConfig: false }),
        layerCache: temp("kiln-oci-layout-conformance-cache-"),
        env: { ...process.env, SOURCE_DATE_EPOCH: "" },
      });
      await builder.buildImage(image, {});

      // A layout whose index.json is not JSON: the checker cannot tell, so it must throw.
      const broken = temp("kiln-oci-layout-conformance-broken-");
      writeFileSync(join(broken, "index.json"), "{ not json");
      const repository = `oci:${root}/team/app`;
      type Ask = Parameters<OciLayoutImageChecker["imageExists"]>;
      const failing = () => {
        const checker = new OciLayoutImageChecker();
        return {
          name: checker.name,
          imageExists: (_repository: Ask[0], tag: Ask[1], arch?: Ask[2], options?: Ask[3]) => checker.imageExists(`oci:${broken}`, tag, arch, options),
        };
      };
      return {
        checker: new OciLayoutImageChecker(),
        present: { repository, tag: image.tag, platforms: ["linux/amd64"] },
        absent: { repository, tag: "never-built", platforms: ["linux/amd64"] },
        wrongArch: { repository, tag: image.tag, platforms: ["linux/amd64", "linux/arm64"] },
        failing,
        cleanup,
      };
    } catch (error) {
      await cleanup();
      throw error;
    }
  },
});
