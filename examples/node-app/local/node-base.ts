/**
 * A Node.js base image made on this machine, standing in for node:20-bookworm-slim with no internet:
 * `FROM scratch` + Debian's static busybox (for `sh`) + this machine's `node` binary with the shared
 * libraries `ldd` lists + its bundled npm. The image is built once and reused.
 */
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, realpathSync, rmSync, writeFileSync, mkdirSync, copyFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { docker, localImageExists, withMachineLock } from "@kiln/test-utils";

export const NODE_BASE_IMAGE = `kiln-local/node:${process.versions.node.split(".")[0]}`;

export async function ensureNodeBaseImage(tag = NODE_BASE_IMAGE): Promise<string> {
  if (await localImageExists(tag)) return tag;
  return withMachineLock(`image-${tag.replace(/[^a-z0-9]+/gi, "_")}`, async () => {
    if (await localImageExists(tag)) return tag;
    const root = mkdtempSync(join(tmpdir(), "kiln-node-base-"));
    try {
      const node = realpathSync(process.execPath);
      const put = (from: string, to: string) => {
        mkdirSync(dirname(join(root, to)), { recursive: true });
        copyFileSync(from, join(root, to));
      };
      put("/bin/busybox", "bin/busybox");
      put(node, "usr/local/bin/node");
      // The dynamic loader and every library node links against, at the paths ldd reports.
      const ldd = execFileSync("ldd", [node], { encoding: "utf8" });
      for (const match of ldd.matchAll(/(\/\S+\.so[^\s]*)/g)) put(realpathSync(match[1]!), match[1]!);
      const npmDir = join(dirname(dirname(node)), "lib", "node_modules", "npm");
      cpSync(realpathSync(npmDir), join(root, "usr/local/lib/node_modules/npm"), { recursive: true });
      writeFileSync(
        join(root, "Dockerfile"),
        [
          "FROM scratch",
          "COPY . /",
          'RUN ["/bin/busybox", "--install", "-s", "/bin"]',
          'RUN ["/bin/sh", "-c", "mkdir -p /tmp /root /usr/bin && chmod 1777 /tmp && ln -s /bin/env /usr/bin/env && ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx && rm /Dockerfile"]',
          "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
          'CMD ["node"]',
          "",
        ].join("\n"),
      );
      await docker(["build", "-q", "-t", tag, root]);
      return tag;
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
}
