import { beforeEach, describe, expect, it } from "vitest";
import { BatchGetImageCommand, ECRClient } from "@aws-sdk/client-ecr";
import { mockClient } from "aws-sdk-client-mock";
import { toNamedChecker, type ImageBuilder } from "@kiln/core";
import { EcrImageChecker } from "../src/checker.js";
import { withEcrChecker } from "../src/with-ecr-checker.js";
import { OCI_INDEX, indexManifest } from "./manifests.js";

const ecr = mockClient(ECRClient);
const HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
beforeEach(() => ecr.reset());

describe("withEcrChecker", () => {
  const inner = {
    name: "docker",
    calls: [] as string[],
    buildImage(image: { uri: string }) {
      this.calls.push(image.uri);
      return Promise.resolve({ uri: image.uri });
    },
    getCheckers: () => [{ name: "registry", imageExists: async () => "found-by-registry" }],
  };

  it("puts the ECR checker first, keeps the builder's checkers and delegates builds", async () => {
    ecr.on(BatchGetImageCommand).resolves({
      images: [{ imageManifest: indexManifest([{ os: "linux", architecture: "amd64" }]), imageManifestMediaType: OCI_INDEX }],
    });
    const builder = withEcrChecker(inner as unknown as ImageBuilder, { credentials: { accessKeyId: "a", secretAccessKey: "s" } });
    const checkers = (builder.getCheckers!() ?? []).map((c) => toNamedChecker(c));
    expect(checkers.map((c) => c.name)).toEqual(["ecr", "registry"]);
    expect(await checkers[0]!.imageExists(`${HOST}/app`, "v1", ["linux/amd64"])).toBe(`${HOST}/app:v1`);
    expect(await builder.buildImage({ uri: "x/y:z" } as never, {})).toEqual({ uri: "x/y:z" });
    expect(inner.calls).toEqual(["x/y:z"]);
    expect((builder as { name?: string }).name).toBe("docker");
  });

  it("passes non-ECR repositories on without calling AWS", async () => {
    const builder = withEcrChecker(inner as unknown as ImageBuilder, new EcrImageChecker());
    const [first] = (builder.getCheckers!() ?? []).map((c) => toNamedChecker(c));
    expect(await first!.imageExists("ghcr.io/acme/app", "v1", ["linux/amd64"])).toBeNull();
    expect(ecr.commandCalls(BatchGetImageCommand)).toHaveLength(0);
  });
});
