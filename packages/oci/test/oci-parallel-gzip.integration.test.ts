/**
 * Layers gzip'd in blocks (parallelGzip.ts), end to end: an image whose file layer spans many gzip
 * blocks — random ones (stored) and text ones (deflated) — built from two clones of the sources by
 * two builders with layer caches of their own gives the same manifest digest; the registry accepts
 * the layer; `docker pull` unpacks it (Docker checks the layer's digest and its diffID) and
 * `docker run` reads the file back intact.
 */
import { createHash, randomBytes } from "node:crypto";
import { cpSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Image } from "@kiln/core";
import { ensureBusyboxImage } from "@kiln/test-utils";
import { GZIP_OPTIONS } from "../src/layerFile.js";
import { TempDirs, baseRegistryForFile, ociBuilder, runPulled } from "./helpers.js";

const tempDirs = new TempDirs();
const base = baseRegistryForFile(ensureBusyboxImage, "kiln/busybox:1.35", { tempDirs });
const temp = (prefix: string) => tempDirs.make(prefix);
// A layer cache of its own per builder: both must really write the layer.
const builder = () => ociBuilder(temp("kiln-oci-pgz-cache-"));

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
      Image.fromBase(base.ref)
        .withSourceFolder(join(root, "data"), "/data")
        .clone({ registry: base.registry.host, name, platform: ["linux/amd64"] });

    const one = await builder().buildImage(declare(first, "kiln/pgz-one"), {});
    const two = await builder().buildImage(declare(second, "kiln/pgz-two"), {});
    expect(two.digest).toBe(one.digest);

    const uri = `${base.registry.host}/kiln/pgz-one@${one.digest}`;
    const out = await runPulled(uri, ["sha256sum", "/data/random.bin", "/data/text.log"], { pullTimeoutMs: 180_000 });
    expect(out).toContain(`${createHash("sha256").update(random).digest("hex")}  /data/random.bin`);
    expect(out).toContain(`${createHash("sha256").update(text).digest("hex")}  /data/text.log`);
  }, 600_000);
});
