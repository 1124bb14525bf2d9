// An image built on a Kiln image (issue 17): a standalone buildkitd pulls bases from registries, so
// canBuild refuses a Kiln base without a registry — unless the Docker Engine (which has it) is in the pool.
import { Image } from "@kiln/core";
import { describe, expect, it } from "vitest";
import { BuildKitImageBuilder } from "../src/builder.js";

const localBase = Image.fromBase("busybox:1.35", { name: "local-base" }).withEnvVars({ A: "1" });
const onLocal = Image.fromBase(localBase, { registry: "localhost:5000", name: "above" }).withEnvVars({ B: "1" });
const registryBase = localBase.clone({ registry: "localhost:5000" });
const onRegistry = Image.fromBase(registryBase, { registry: "localhost:5000", name: "above" }).withEnvVars({ B: "1" });

describe("BuildKitImageBuilder.canBuild with Kiln bases", () => {
  it("a standalone buildkitd: refuses a Kiln base without a registry, naming it; accepts one in a registry", () => {
    const standalone = new BuildKitImageBuilder({ endpoints: ["unix:///nonexistent/buildkitd.sock"], projectDir: false });
    const refused = standalone.canBuild(onLocal);
    expect(refused.ok).toBe(false);
    expect(!refused.ok && refused.reason).toContain(`its base image ${localBase.uri} is a Kiln image without a registry`);
    expect(standalone.canBuild(onRegistry)).toEqual({ ok: true });
  });

  it("the Docker Engine's BuildKit sees the local base: accepted", () => {
    const engine = new BuildKitImageBuilder({ endpoints: ["docker-engine"], projectDir: false });
    expect(engine.canBuild(onLocal)).toEqual({ ok: true });
  });
});
