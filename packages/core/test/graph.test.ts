// Image graphs (issue 17): an image built on a Kiln image — its tag, FROM, JSON, and the rules
// (platforms covered by the base, no cycles) as ValidationErrors naming both images.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { renderDockerfile } from "../src/dockerfile.js";
import { BaseMismatchError, ValidationError } from "../src/errors.js";
import { chainOf, describeChain, mapChain } from "../src/graph.js";
import { resolveKilnBase } from "../src/graphBuild.js";
import { computeTag } from "../src/hash.js";
import { Image } from "../src/image.js";

const dir = mkdtempSync(join(tmpdir(), "kiln-graph-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  writeFileSync(join(dir, name), text);
  return join(dir, name);
};

/** Three images: bottom (a file), middle (env), top (a file), each on the one below. */
function chain(bottomText = "one", middleValue = "1", topText = "top") {
  const bottom = Image.fromBase("busybox:1.35", { registry: "localhost:5000", name: "bottom" }).withSourceFile(
    file(`b-${bottomText}.txt`, bottomText),
    "/b.txt",
  );
  const middle = Image.fromBase(bottom, { registry: "localhost:5000", name: "middle" }).withEnvVars({ M: middleValue });
  const top = Image.fromBase(middle, { registry: "localhost:5000", name: "top" }).withSourceFile(file(`t-${topText}.txt`, topText), "/t.txt");
  return { bottom, middle, top };
}

describe("Image.fromBase(otherImage)", () => {
  it("FROM names the base's full tagged reference; baseImage and chainOf give the images below", () => {
    const { bottom, middle, top } = chain();
    expect(renderDockerfile(middle).split("\n")[0]).toBe(`FROM ${bottom.uri}`);
    expect(renderDockerfile(top).split("\n")[0]).toBe(`FROM ${middle.uri}`);
    expect(top.baseImage?.uri).toBe(middle.uri);
    expect(chainOf(top).map((i) => i.uri)).toEqual([top.uri, middle.uri, bottom.uri]);
    expect(describeChain(top)).toBe(`${top.uri} <- ${middle.uri} <- ${bottom.uri} <- busybox:1.35`);
  });

  it("a change at each level changes that level's tag and every tag above it, and nothing below", () => {
    const base = chain();
    const bottomChanged = chain("two");
    expect(bottomChanged.bottom.tag).not.toBe(base.bottom.tag);
    expect(bottomChanged.middle.tag).not.toBe(base.middle.tag);
    expect(bottomChanged.top.tag).not.toBe(base.top.tag);
    const middleChanged = chain("one", "2");
    expect(middleChanged.bottom.tag).toBe(base.bottom.tag);
    expect(middleChanged.middle.tag).not.toBe(base.middle.tag);
    expect(middleChanged.top.tag).not.toBe(base.top.tag);
    const topChanged = chain("one", "1", "other");
    expect(topChanged.bottom.tag).toBe(base.bottom.tag);
    expect(topChanged.middle.tag).toBe(base.middle.tag);
    expect(topChanged.top.tag).not.toBe(base.top.tag);
  });

  it("the base's content tag is hashed, not its registry or name; and it differs from basing on the reference", () => {
    const { bottom, middle } = chain();
    const moved = Image.fromBase(bottom.clone({ registry: "ghcr.io/acme", name: "elsewhere" }), { registry: "localhost:5000", name: "middle" }).withEnvVars({
      M: "1",
    });
    expect(moved.tag).toBe(middle.tag);
    expect(renderDockerfile(moved).split("\n")[0]).toBe(`FROM ghcr.io/acme/elsewhere:${bottom.tag}`);
    const byReference = Image.fromBase(bottom.uri, { registry: "localhost:5000", name: "middle" }).withEnvVars({ M: "1" });
    expect(byReference.tag).not.toBe(middle.tag);
    const base = middle.explain().inputs.find((i) => i.label === "base")!;
    expect(base.value).toContain(bottom.tag);
  });

  it("baseImage: otherImage in fromDebianBase and fromNodeBase", () => {
    const { middle } = chain();
    const py = Image.fromDebianBase({ baseImage: middle, name: "py" }).withPipPackages("six");
    const node = Image.fromNodeBase({ baseImage: middle, name: "node" }).withEnvVars({ A: "1" });
    for (const image of [py, node]) {
      expect(image.baseImage?.uri).toBe(middle.uri);
      expect(renderDockerfile(image).split("\n")[0]).toBe(`FROM ${middle.uri}`);
    }
  });

  it("a Kiln base that needs no build is just its reference", () => {
    const plain = Image.fromBase("busybox:1.35");
    const on = Image.fromBase(plain, { name: "x" }).withEnvVars({ A: "1" });
    expect(on.baseImage).toBeUndefined();
    expect(on.tag).toBe(Image.fromBase("busybox:1.35", { name: "x" }).withEnvVars({ A: "1" }).tag);
  });

  it("toJSON nests the whole chain and fromJSON restores it (same tags, same FROM)", () => {
    const { top } = chain();
    const json = JSON.parse(JSON.stringify(top));
    expect(json.base.image.name).toBe("middle");
    expect(json.base.image.base.image.name).toBe("bottom");
    const back = Image.fromJSON(json);
    expect(back.uri).toBe(top.uri);
    expect(chainOf(back).map((i) => i.uri)).toEqual(chainOf(top).map((i) => i.uri));
    expect(renderDockerfile(back)).toBe(renderDockerfile(top));
    expect(computeTag(back.spec)).toBe(computeTag(top.spec));
  });

  it("mapChain applies a change down the chain, re-pointing each FROM", () => {
    const { top } = chain();
    const local = Image.fromJSON({ ...JSON.parse(JSON.stringify(top)) });
    const both = mapChain(local, (i) => i.clone({ platform: ["linux/amd64", "linux/arm64"], registry: "reg.example" }));
    expect(chainOf(both).every((i) => i.platform.length === 2 && i.registry === "reg.example")).toBe(true);
    expect(renderDockerfile(both).split("\n")[0]).toBe(`FROM ${both.baseImage!.uri}`);
    expect(both.tag).not.toBe(top.tag); // platforms are hashed
  });
});

describe("graph rules", () => {
  const expectNamesBoth = (fn: () => unknown, image: string, base: string) => {
    let error: unknown;
    try {
      fn();
    } catch (e) {
      error = e;
    }
    expect(ValidationError.isInstance(error), String(error)).toBe(true);
    expect((error as Error).message).toContain(image);
    expect((error as Error).message).toContain(base);
    return error as ValidationError;
  };

  it("a base declared for fewer platforms than the dependent: fromBase, baseImage, clone, fromJSON", () => {
    const base = Image.fromBase("busybox:1.35", { registry: "localhost:5000", name: "amd-only" }).withEnvVars({ A: "1" });
    const two = ["linux/amd64", "linux/arm64"] as const;
    const error = expectNamesBoth(() => Image.fromBase(base, { name: "multi", platform: [...two] }), "multi", "localhost:5000/amd-only");
    expect(error.message).toContain("linux/arm64");
    expect(error.details).toMatchObject({ image: "multi", base: "localhost:5000/amd-only", missing: ["linux/arm64"] });
    expectNamesBoth(() => Image.fromDebianBase({ baseImage: base, name: "py", platform: [...two] }), "py", "amd-only");
    const ok = Image.fromBase(base, { name: "single" }).withEnvVars({ B: "1" });
    expectNamesBoth(() => ok.clone({ platform: [...two] }), "single", "amd-only");
    const json = JSON.parse(JSON.stringify(ok));
    json.platform = [...two];
    expectNamesBoth(() => Image.fromJSON(json), "single", "amd-only");
  });

  it("a cycle (an object graph handed to fromJSON) names both images", () => {
    const { middle } = chain();
    const json = JSON.parse(JSON.stringify(middle));
    json.base.image.base.image = json; // bottom is now "built on" middle, which is built on bottom
    const error = expectNamesBoth(() => Image.fromJSON(json), "localhost:5000/middle", "localhost:5000/bottom");
    expect(error.message).toMatch(/cycle/);
    expect(error.details).toMatchObject({ image: "localhost:5000/bottom", base: "localhost:5000/middle" });
  });
});

describe("building on a Kiln base (graphBuild)", () => {
  it("a base that comes back under another tag than the one hashed into the image is never built on", async () => {
    const { middle, top } = chain("guard");
    const other = middle.withEnvVars({ M: "moved" });
    const signal = new AbortController().signal;
    const answer = (uri: string) => async () => ({ uri, outcome: "built" as const, builder: "test" });
    const resolving = resolveKilnBase(top, signal, () => {}, answer(other.uri));
    await expect(resolving).rejects.toBeInstanceOf(BaseMismatchError);
    await expect(resolving).rejects.toMatchObject({ code: "KILN_BASE_MISMATCH", details: { image: top.uri, built: other.uri } });
    // The base's own tag (found or promoted elsewhere, under the same tag) is built on.
    const elsewhere = `ghcr.io/acme/middle:${middle.tag}`;
    const resolved = await resolveKilnBase(top, signal, () => {}, answer(elsewhere));
    expect("image" in resolved && resolved.image.spec.base.kind === "image" && resolved.image.spec.base.ref).toBe(elsewhere);
  });
});
