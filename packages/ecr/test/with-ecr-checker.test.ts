import { beforeEach, describe, expect, it } from "vitest";
import { BatchGetImageCommand, ECRClient } from "@aws-sdk/client-ecr";
import { mockClient } from "aws-sdk-client-mock";
import { toNamedChecker, type ImageBuilder } from "@kiln/core";
import { EcrImageChecker } from "../src/checker.js";
import { withEcrChecker } from "../src/withEcrChecker.js";
import { batchGetImage } from "./batchGetImage.js";
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
    ecr.on(BatchGetImageCommand).callsFake(batchGetImage({ manifest: indexManifest([{ os: "linux", architecture: "amd64" }]), mediaType: OCI_INDEX }));
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

  it("never sends a bare name (local-only or Docker Hub image) to ECR, even when ECR has that name and tag", async () => {
    // ECR's default account holds myapp:<tag>; the local image of the same name must not be reported found.
    ecr.on(BatchGetImageCommand).callsFake(batchGetImage({ manifest: indexManifest([{ os: "linux", architecture: "amd64" }]), mediaType: OCI_INDEX }));
    const options = { credentials: { accessKeyId: "a", secretAccessKey: "s" } };
    for (const checker of [options, { ...options, region: "eu-west-1" }, { ...options, registryId: "123456789012" }]) {
      const builder = withEcrChecker(inner as unknown as ImageBuilder, checker);
      const [first] = (builder.getCheckers!() ?? []).map((c) => toNamedChecker(c));
      expect(await first!.imageExists("myapp", "0123456789abcdef0123456789abcdef", ["linux/amd64"])).toBeNull();
      expect(await first!.imageExists("user/app", "v1", ["linux/amd64"])).toBeNull();
    }
    expect(ecr.commandCalls(BatchGetImageCommand)).toHaveLength(0);
    // An ECR host is sent to ECR.
    const builder = withEcrChecker(inner as unknown as ImageBuilder, options);
    const [first] = (builder.getCheckers!() ?? []).map((c) => toNamedChecker(c));
    expect(await first!.imageExists(`${HOST}/myapp`, "v1", ["linux/amd64"])).toBe(`${HOST}/myapp:v1`);
    // The tag, then its linux/amd64 child manifest by digest.
    expect(ecr.commandCalls(BatchGetImageCommand)).toHaveLength(2);
    expect(ecr.commandCalls(BatchGetImageCommand)[0]!.args[0].input).toMatchObject({ registryId: "123456789012", repositoryName: "myapp" });
  });

  it("sends a configured alias host to ECR", async () => {
    ecr.on(BatchGetImageCommand).callsFake(batchGetImage({ manifest: indexManifest([{ os: "linux", architecture: "amd64" }]), mediaType: OCI_INDEX }));
    const builder = withEcrChecker(inner as unknown as ImageBuilder, {
      credentials: { accessKeyId: "a", secretAccessKey: "s" },
      registryAliases: { "ecr.internal:5000": { registryId: "210987654321", region: "eu-west-1" } },
    });
    const [first] = (builder.getCheckers!() ?? []).map((c) => toNamedChecker(c));
    expect(await first!.imageExists("ecr.internal:5000/app", "v1", ["linux/amd64"])).toBe("ecr.internal:5000/app:v1");
    expect(ecr.commandCalls(BatchGetImageCommand)[0]!.args[0].input).toMatchObject({ registryId: "210987654321", repositoryName: "app" });
  });
});

describe("EcrImageChecker.handles", () => {
  it("claims a bare name only when registryId or region was set explicitly", () => {
    expect(new EcrImageChecker().handles("myapp")).toBe(false);
    expect(new EcrImageChecker().handles("user/app")).toBe(false);
    expect(new EcrImageChecker({ region: "eu-west-1" }).handles("myapp")).toBe(true);
    expect(new EcrImageChecker({ registryId: "123456789012" }).handles("team/app")).toBe(true);
    expect(new EcrImageChecker().handles(`${HOST}/app`)).toBe(true);
    expect(new EcrImageChecker({ region: "eu-west-1" }).handles("ghcr.io/acme/app")).toBe(false);
  });
});
