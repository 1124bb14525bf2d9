/**
 * pinBase and the uv image, without a registry: an image pinned to a uv image digest (withUvDigest)
 * has it in its tag, in `COPY --from=uvImage@digest` and in its explanation; only images that copy uv
 * need it; the image's own pinBase choice applies to it. (Resolving the digest against a real
 * registry: pin-uv.integration.test.ts.)
 */
import { describe, expect, it } from "vitest";
import { planDockerfile, renderDockerfile, usesUvImage } from "../src/dockerfile.js";
import { Image } from "../src/image.js";
import { needsBasePin, needsUvPin } from "../src/pinBase.js";
import { uvImageReference } from "../src/pinnedReference.js";
import { thrown } from "./thrown.js";

const DIGEST = `sha256:${"1a".repeat(32)}`;
const OTHER = `sha256:${"2b".repeat(32)}`;
const UV = "localhost:5000/tools/uv:0.8.15";

/** The `COPY --from=… /uv /uvx /usr/local/bin/` line of a rendered Dockerfile. */
function uvCopyLine(dockerfile: string): string | undefined {
  return dockerfile.split("\n").find((line) => line.startsWith("COPY --from=") && line.endsWith(" /uv /uvx /usr/local/bin/"));
}

const withUv = () => Image.fromDebianBase({ baseImage: "localhost:5000/python:3.11-slim", uvImage: UV }).withPipPackages("six");

describe("pinBase: a uv image pinned by digest", () => {
  it("the digest is in the tag (the unpinned tag is unchanged) and in COPY --from=uvImage@digest", () => {
    const declared = withUv();
    const pinned = declared.withUvDigest(DIGEST);
    expect(pinned.spec.uvDigest).toBe(DIGEST);
    expect(pinned.tag).not.toBe(declared.tag);
    expect(declared.withUvDigest(OTHER).tag).not.toBe(pinned.tag);
    expect(withUv().tag).toBe(declared.tag);
    expect(uvCopyLine(renderDockerfile(declared))).toBe(`COPY --from=${UV} /uv /uvx /usr/local/bin/`);
    expect(uvCopyLine(renderDockerfile(pinned))).toBe(`COPY --from=${uvImageReference(pinned.spec)} /uv /uvx /usr/local/bin/`);
    expect(uvImageReference(pinned.spec)).toBe(`${UV}@${DIGEST}`);
    expect(uvCopyLine(renderDockerfile(pinned, { buildkit: false }))).toBe(`COPY --from=${UV}@${DIGEST} /uv /uvx /usr/local/bin/`);
    // planDockerfile (what builders that split the build read) says the same.
    expect(planDockerfile(pinned).steps.flatMap((step) => step.lines)).toContain(`COPY --from=${UV}@${DIGEST} /uv /uvx /usr/local/bin/`);
  });

  it("explain shows the uv image's digest; the spec carries it through JSON", () => {
    const pinned = withUv().withUvDigest(DIGEST);
    const installer = pinned.explain().inputs.find((input) => input.label === "installer")!;
    expect(installer.value).toContain(`uvDigest=${JSON.stringify(DIGEST)}`);
    expect(
      withUv()
        .explain()
        .inputs.find((input) => input.label === "installer")!.value,
    ).not.toContain("uvDigest");
    const copy = Image.fromJSON(JSON.parse(JSON.stringify(pinned.toJSON())));
    expect(copy.spec.uvDigest).toBe(DIGEST);
    expect(copy.tag).toBe(pinned.tag);
    expect(thrown(() => Image.fromJSON({ ...pinned.toJSON(), uvDigest: "sha256:nothex" }))).toMatchObject({ code: "KILN_VALIDATION" });
  });

  it("JSON cannot make the tag and COPY --from name different uv digests; another installer drops the uv digest", () => {
    const byDigest = withUv().clone({ uvImage: `${UV}@${DIGEST}` });
    // A uvDigest other than the one the reference names is refused; the same one adds nothing.
    expect(thrown(() => Image.fromJSON({ ...byDigest.toJSON(), uvDigest: OTHER }))).toMatchObject({ code: "KILN_VALIDATION" });
    const same = Image.fromJSON({ ...byDigest.toJSON(), uvDigest: DIGEST });
    expect(same.spec.uvDigest).toBeUndefined();
    expect(same.tag).toBe(byDigest.tag);
    // pip copies no uv: a digest pinned for uv would move the tag with nothing using it.
    const pinned = withUv().withUvDigest(DIGEST);
    const pip = pinned.clone({ installer: "pip" });
    expect(pip.spec.uvDigest).toBeUndefined();
    expect(pip.tag).toBe(withUv().clone({ installer: "pip" }).tag);
    expect(pinned.clone({ installer: "uv" }).spec.uvDigest).toBe(DIGEST);
  });

  it("another uvImage drops the digest of the old one; a reference with a digest keeps its own", () => {
    const pinned = withUv().withUvDigest(DIGEST);
    const moved = pinned.clone({ uvImage: "localhost:5000/tools/uv:0.9.0" });
    expect(moved.spec.uvDigest).toBeUndefined();
    expect(pinned.clone({ uvImage: UV }).spec.uvDigest).toBe(DIGEST);
    const byDigest = withUv().clone({ uvImage: `${UV}@${DIGEST}` });
    expect(byDigest.withUvDigest(DIGEST).tag).toBe(byDigest.tag);
    expect(uvCopyLine(renderDockerfile(byDigest))).toBe(`COPY --from=${UV}@${DIGEST} /uv /uvx /usr/local/bin/`);
    expect(thrown(() => byDigest.withUvDigest(OTHER))).toMatchObject({ code: "KILN_VALIDATION" });
    expect(needsUvPin(byDigest, true)).toBe(false);
  });

  it("only an image that copies uv needs its uv image pinned, by the image's own choice before the global one", () => {
    const pip = Image.fromDebianBase({ baseImage: "python:3.11-slim", installer: "pip" }).withPipPackages("six");
    expect(usesUvImage(pip)).toBe(false);
    expect(uvCopyLine(renderDockerfile(pip))).toBeUndefined();
    expect(needsUvPin(pip, true)).toBe(false);
    const envOnly = Image.fromBase("busybox:1.36").withEnvVars({ A: "1" });
    expect(needsUvPin(envOnly, true)).toBe(false);

    const uv = withUv();
    expect(usesUvImage(uv)).toBe(true);
    expect(needsUvPin(uv, true)).toBe(true);
    expect(needsUvPin(uv, false)).toBe(false);
    expect(needsUvPin(uv.withUvDigest(DIGEST), true)).toBe(false);
    expect(needsUvPin(uv.clone({ pinBase: true }), false)).toBe(true);
    expect(needsUvPin(uv.clone({ pinBase: false }), true)).toBe(false);
    // A base pinned already, its uv image not yet: still something to pin.
    const basePinned = uv.withBaseDigest(OTHER);
    expect(needsBasePin(basePinned, true)).toBe(true);
    expect(needsBasePin(basePinned.withUvDigest(DIGEST), true)).toBe(false);
    // In a chain, the image above copies uv; its base does not.
    const bottom = Image.fromBase(`localhost:5000/python:3.11-slim@${OTHER}`, { name: "uv/bottom" }).withEnvVars({ A: "1" });
    const top = Image.fromBase(bottom, { name: "uv/top" }).clone({ uvImage: UV }).withPipPackages("six");
    expect(needsBasePin(bottom, true)).toBe(false);
    expect(needsBasePin(top, true)).toBe(true);
    expect(needsBasePin(top.withUvDigest(DIGEST), true)).toBe(false);
  });
});
