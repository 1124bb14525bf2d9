/** Runs @kiln/core/testing's conformance suites against a real registry-backed checker and builder. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ImageCheckOptions } from "../src/builder.js";
import { checkImage } from "../src/registry/check.js";
import { Image } from "../src/image.js";
import { describeBuilderConformance, describeCheckerConformance } from "../src/testing/index.js";
import { pushTestImage, startRegistry, type TestRegistry } from "../../test-utils/src/registry.js";
import { RegistryFixtureBuilder, RegistryFixtureChecker } from "./fixtures/plugins/registry-fixture-plugin.js";

let registry: TestRegistry;
beforeAll(async () => {
  registry = await startRegistry();
});
afterAll(async () => {
  await registry?.stop();
});

describeCheckerConformance(
  "RegistryFixtureChecker (instance)",
  async () => {
    await pushTestImage(registry, "conf/app", "v1", "oci", { platforms: ["linux/amd64"] });
    return {
      checker: new RegistryFixtureChecker(registry.host),
      present: { repository: `${registry.host}/conf/app`, tag: "v1", platforms: ["linux/amd64"] },
      absent: { repository: `${registry.host}/conf/app`, tag: "nope", platforms: ["linux/amd64"] },
      wrongArch: { repository: `${registry.host}/conf/app`, tag: "v1", platforms: ["linux/amd64", "linux/arm64"] },
      failing: () => new RegistryFixtureChecker(registry.host, "127.0.0.1:9"),
    };
  },
  {
    // Core's registry client against a server that never answers: the abort closes its socket.
    hanging: (server) => ({
      checker: new RegistryFixtureChecker(server.host),
      target: { repository: `${server.host}/conf/app`, tag: "v1", platforms: ["linux/amd64"] },
    }),
  },
);

describeCheckerConformance("a checker class with a static imageExists", async () => {
  await pushTestImage(registry, "conf/static", "v1", "oci-index-with-attestation", { platforms: ["linux/amd64", "linux/arm64"] });
  await pushTestImage(registry, "conf/static", "amd64-only", "oci-index-missing-platform", { platforms: ["linux/amd64", "linux/arm64"] });
  const host = registry.host;
  class StaticChecker {
    static imageExists(repository: string, tag: string, arch?: readonly ("linux/amd64" | "linux/arm64")[], options?: ImageCheckOptions) {
      return new RegistryFixtureChecker(host).imageExists(repository, tag, arch, options);
    }
  }
  return {
    checker: StaticChecker,
    present: { repository: `${host}/conf/static`, tag: "v1", platforms: ["linux/amd64", "linux/arm64"] },
    absent: { repository: `${host}/conf/static`, tag: "v2", platforms: ["linux/amd64"] },
    wrongArch: { repository: `${host}/conf/static`, tag: "amd64-only", platforms: ["linux/amd64", "linux/arm64"] },
    failing: () => {
      class DeadRegistryChecker {
        static imageExists(repository: string, tag: string) {
          return new RegistryFixtureChecker(host, "127.0.0.1:9").imageExists(repository, tag);
        }
      }
      return DeadRegistryChecker;
    },
  };
});

let builder: RegistryFixtureBuilder;
describeBuilderConformance("RegistryFixtureBuilder", async () => {
  builder = new RegistryFixtureBuilder(registry);
  const image = Image.fromBase("kiln-test/busybox:1.35", { registry: registry.host, name: "conf/built" }).withEnvVars({ RUN: String(Date.now()) });
  return {
    builder,
    image,
    exists: async (uri) => (await checkImage(uri, { platforms: ["linux/amd64"] })).present,
  };
});

describe("the builder suite really exercised the builder", () => {
  it("built twice: once plainly, once forced (dry run, the aborted builds and the engine's found-check built nothing)", () => {
    expect(builder.builds).toBe(2);
  });
});
