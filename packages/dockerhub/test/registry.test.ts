/** RegistryImageChecker against the real registry in its three auth modes, plus the conformance suite. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthError } from "@kiln/core";
import { toNamedChecker } from "@kiln/core/plugin";
import { describeCheckerConformance } from "@kiln/core/testing";
import { RegistryImageChecker } from "../src/index.js";
import { pushTestImage, startRegistry, type TestRegistry } from "../../test-utils/src/registry.js";

for (const mode of ["none", "basic", "bearer"] as const) {
  describe(`RegistryImageChecker, auth=${mode}`, () => {
    let registry: TestRegistry;
    let checker: RegistryImageChecker;
    beforeAll(async () => {
      registry = await startRegistry({ auth: mode });
      await pushTestImage(registry, "team/multi", "v1", "docker-manifest-list");
      await pushTestImage(registry, "team/single", "v1", "oci", { platforms: ["linux/arm64"], architectureSpelling: { arm64: "aarch64" } });
      checker = new RegistryImageChecker({
        useDockerConfig: false,
        credentials: registry.credentials ? { [registry.host]: registry.credentials } : {},
      });
    });
    afterAll(async () => {
      await registry?.stop();
    });

    it("present for all platforms, absent when one is missing or the tag is unknown", async () => {
      const repo = `${registry.host}/team/multi`;
      expect(await checker.imageExists(repo, "v1", ["linux/amd64", "linux/arm64"])).toBe(`${repo}:v1`);
      expect(await checker.imageExists(`${registry.host}/team/single`, "v1", ["linux/arm64"])).toBe(`${registry.host}/team/single:v1`);
      expect(await checker.imageExists(`${registry.host}/team/single`, "v1", ["linux/amd64", "linux/arm64"])).toBeNull();
      expect(await checker.imageExists(`${registry.host}/team/single`, "v1")).toBeNull(); // default: linux/amd64
      expect(await checker.imageExists(repo, "v2")).toBeNull();
    });

    if (mode !== "none") {
      it("without credentials it throws AuthError instead of answering", async () => {
        const anonymous = new RegistryImageChecker({ useDockerConfig: false });
        const error = await anonymous.imageExists(`${registry.host}/team/multi`, "v1").catch((e: unknown) => e);
        expect(AuthError.isInstance(error)).toBe(true);
      });
    }
  });
}

let conformanceRegistry: TestRegistry;
describeCheckerConformance(
  "RegistryImageChecker",
  async () => {
    conformanceRegistry = await startRegistry({ auth: "bearer" });
    await pushTestImage(conformanceRegistry, "conf/app", "v1", "oci-index-with-attestation");
    await pushTestImage(conformanceRegistry, "conf/amd", "v1", "docker-v2");
    const repo = `${conformanceRegistry.host}/conf/app`;
    return {
      checker: new RegistryImageChecker({ useDockerConfig: false, credentials: { [conformanceRegistry.host]: conformanceRegistry.credentials! } }),
      present: { repository: repo, tag: "v1", platforms: ["linux/amd64", "linux/arm64"] },
      absent: { repository: repo, tag: "nope", platforms: ["linux/amd64"] },
      wrongArch: { repository: `${conformanceRegistry.host}/conf/amd`, tag: "v1", platforms: ["linux/amd64", "linux/arm64"] },
      // Wrong credentials: it must throw, not answer.
      failing: () => new RegistryImageChecker({ useDockerConfig: false, credentials: { [conformanceRegistry.host]: { username: "kiln", password: "wrong" } } }),
      cleanup: () => conformanceRegistry.stop(),
    };
  },
  {
    // A loopback "registry" that never answers; patient timeouts, so only the abort ends the request.
    hanging: (server) => ({
      checker: new RegistryImageChecker({
        useDockerConfig: false,
        retry: { retries: 2, baseDelayMs: 10 },
        timeouts: { connectMs: 5_000, idleMs: 30_000, totalMs: 60_000 },
      }),
      target: { repository: `${server.host}/library/app`, tag: "v1", platforms: ["linux/amd64"] },
    }),
  },
);

describe("RegistryImageChecker.answersFor: every registry, nothing else", () => {
  it("claims any registry's repository (Docker Hub's too), declines OCI layouts and invalid names", () => {
    const checker = new RegistryImageChecker({ useDockerConfig: false });
    for (const repository of [
      "ghcr.io/acme/app",
      "localhost:5000/app",
      "python",
      "docker.io/library/python",
      "123456789012.dkr.ecr.us-east-1.amazonaws.com/app",
    ]) {
      expect(checker.answersFor(repository), repository).toBe(true);
    }
    for (const repository of ["oci:/tmp/layout", "", "Not A Name"]) {
      expect(checker.answersFor(repository), repository).toBe(false);
    }
  });

  it("the engine sees its registered name and answersFor through the class form", () => {
    const named = toNamedChecker(RegistryImageChecker);
    expect(named.name).toBe("registry");
    expect(named.answersFor?.("oci:/tmp/layout")).toBe(false);
    expect(named.answersFor?.("ghcr.io/acme/app")).toBe(true);
  });
});
