/**
 * Layers gzip'd in blocks (parallelGzip.ts), end to end: an image whose file layer spans many gzip
 * blocks — random ones (stored) and text ones (deflated) — built from two clones of the sources by
 * two builders with layer caches of their own gives the same manifest digest; the registry accepts
 * the layer; `docker pull` unpacks it (Docker checks the layer's digest and its diffID) and
 * `docker run` reads the file back intact.
 */
import { createHash, randomBytes } from "node:crypto";
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Image, RegistryClient } from "@kiln/core";
import { docker, ensureBusyboxImage, startRegistry, type TestRegistry } from "@kiln/test-utils";
import { OciImageBuilder } from "../src/index.js";
import { GZIP_OPTIONS } from "../src/layerFile.js";

let registry: TestRegistry;
let baseRef: string;
const tempDirs: string[] = [];
const temp = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
};
// A layer cache of its own per builder: both must really write the layer.
const builder = () =>
  new OciImageBuilder({
    client: new RegistryClient({ useDockerConfig: false }),
    layerCache: temp("kiln-oci-pgz-cache-"),
    env: { ...process.env, SOURCE_DATE_EPOCH: "" },
  });

beforeAll(async () => {
  const busybox = await ensureBusyboxImage();
  registry = await startRegistry({ auth: "none" });
  baseRef = `${registry.host}/kiln/busybox:1.35`;
  await docker(["tag", busybox, baseRef]);
  await docker(["push", baseRef], { timeoutMs: 120_000 });
  await docker(["image", "rm", baseRef]).catch(() => undefined);
}, 300_000);

afterAll(async () => {
  await registry?.stop();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

describe("a layer of many gzip blocks", () => {
  it("same manifest digest from two clones and two builders; docker pull unpacks it and docker run reads the files intact", async () => {
    const block = GZIP_OPTIONS.blockBytes;
    const first = temp("kiln-oci-pgz-src-");
    mkdirSync(join(first, "data"));
    const random = randomBytes(3 * block + 1234);
    const text = Buffer.from(Array.from({ length: 120_000 }, (_, i) => `line ${i % 977} of a log\n`).join(""));
    writeFileSync(join(first, "data", "random.bin"), random);
    writeFileSync(join(first, "data", "text.log"), text);
    const second = temp("kiln-oci-pgz-src-");
    cpSync(first, second, { recursive: true });
    const declare = (root: string, name: string) =>
      Image.fromBase(baseRef)
        .withSourceFolder(join(root, "data"), "/data")
        .clone({ registry: registry.host, name, platform: ["linux/amd64"] });

    const one = await builder().buildImage(declare(first, "kiln/pgz-one"), {});
    const two = await builder().buildImage(declare(second, "kiln/pgz-two"), {});
    expect(two.digest).toBe(one.digest);

    const uri = `${registry.host}/kiln/pgz-one@${one.digest}`;
    await docker(["pull", uri], { timeoutMs: 180_000 });
    try {
      const out = await docker(["run", "--rm", "--network", "none", uri, "sha256sum", "/data/random.bin", "/data/text.log"], { timeoutMs: 120_000 });
      expect(out).toContain(`${createHash("sha256").update(random).digest("hex")}  /data/random.bin`);
      expect(out).toContain(`${createHash("sha256").update(text).digest("hex")}  /data/text.log`);
    } finally {
      await docker(["image", "rm", "-f", uri]).catch(() => undefined);
    }
  }, 600_000);
});
