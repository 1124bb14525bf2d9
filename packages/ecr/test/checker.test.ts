import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  BatchGetImageCommand,
  ECRClient,
  GetDownloadUrlForLayerCommand,
  ImageNotFoundException,
  RepositoryNotFoundException,
  ServerException,
} from "@aws-sdk/client-ecr";
import { mockClient } from "aws-sdk-client-mock";
import { CheckFailedError, KilnError, type BuildEvent } from "@kiln/core";
import { runCheckers, toNamedChecker } from "@kiln/core/plugin";
import { EcrImageChecker } from "../src/checker.js";
import type { EcrWarning } from "../src/warnings.js";
import { batchGetImage } from "./batchGetImage.js";
import { DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, indexManifest, singleArch } from "./manifests.js";

const HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
const REPO = `${HOST}/team/app`;
const TAG = "0123456789abcdef0123456789abcdef";
const ecr = mockClient(ECRClient);

function image(manifest: string, mediaType: string, registryId = "123456789012") {
  return {
    images: [{ registryId, repositoryName: "team/app", imageId: { imageTag: TAG }, imageManifest: manifest, imageManifestMediaType: mediaType }],
    failures: [],
  };
}

/** A fetch that serves one blob body for one URL and records what it was asked. */
function blobFetch(url: string, body: string) {
  const calls: string[] = [];
  const fetch = async (requested: string) => {
    calls.push(requested);
    return requested === url ? new Response(body, { status: 200 }) : new Response("no", { status: 404 });
  };
  return { fetch, calls };
}

function thrown(promise: Promise<unknown>): Promise<KilnError> {
  return promise.then(
    (value) => {
      throw new Error(`expected a rejection, got ${JSON.stringify(value)}`);
    },
    (error: unknown) => {
      expect(KilnError.isInstance(error)).toBe(true);
      return error as KilnError;
    },
  );
}

beforeEach(() => ecr.reset());
afterEach(() => vi.restoreAllMocks());

describe("EcrImageChecker.imageExists — request", () => {
  it("asks BatchGetImage for the tag in the registry and region named by the host, with all four media types", async () => {
    ecr.on(BatchGetImageCommand).callsFake(batchGetImage({ manifest: indexManifest([{ os: "linux", architecture: "amd64" }]), mediaType: OCI_INDEX }));
    const checker = new EcrImageChecker({ credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "s" } });
    const uri = await checker.imageExists(REPO, TAG, ["linux/amd64"]);
    expect(uri).toBe(`${REPO}:${TAG}`);

    const [call] = ecr.commandCalls(BatchGetImageCommand);
    expect(call!.args[0].input).toEqual({
      registryId: "123456789012",
      repositoryName: "team/app",
      imageIds: [{ imageTag: TAG }],
      acceptedMediaTypes: expect.arrayContaining([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST]),
    });
    expect(call!.args[0].input.acceptedMediaTypes).toHaveLength(4);
    // The client was made for the host's region.
    const client = call!.thisValue as ECRClient;
    expect(await client.config.region()).toBe("eu-west-1");
  });

  it("uses FIPS and dual-stack endpoints for FIPS and dual-stack hosts", async () => {
    ecr.on(BatchGetImageCommand).callsFake(batchGetImage({ manifest: indexManifest([{ os: "linux", architecture: "amd64" }]), mediaType: OCI_INDEX }));
    const checker = new EcrImageChecker({ credentials: { accessKeyId: "a", secretAccessKey: "s" } });
    await checker.imageExists("123456789012.dkr-ecr-fips.us-east-2.on.aws/app", TAG);
    const client = ecr.commandCalls(BatchGetImageCommand)[0]!.thisValue as ECRClient;
    expect(await client.config.region()).toBe("us-east-2");
    expect(await client.config.useFipsEndpoint()).toBe(true);
    expect(await client.config.useDualstackEndpoint()).toBe(true);
  });

  it("sends the configured registryId for a cross-account repository given without a host, and builds the URI from it", async () => {
    ecr
      .on(BatchGetImageCommand)
      .callsFake(batchGetImage({ manifest: indexManifest([{ os: "linux", architecture: "amd64" }]), mediaType: OCI_INDEX, registryId: "999988887777" }));
    const checker = new EcrImageChecker({ registryId: "999988887777", region: "ap-south-1", credentials: { accessKeyId: "a", secretAccessKey: "s" } });
    expect(await checker.imageExists("shared/base", TAG)).toBe(`999988887777.dkr.ecr.ap-south-1.amazonaws.com/shared/base:${TAG}`);
    expect(ecr.commandCalls(BatchGetImageCommand)[0]!.args[0].input.registryId).toBe("999988887777");
  });

  it("sends the host's account as registryId even when the caller's credentials belong to another account", async () => {
    ecr
      .on(BatchGetImageCommand)
      .callsFake(batchGetImage({ manifest: indexManifest([{ os: "linux", architecture: "amd64" }]), mediaType: OCI_INDEX, registryId: "555566667777" }));
    const checker = new EcrImageChecker({ credentials: { accessKeyId: "a", secretAccessKey: "s" } });
    await checker.imageExists("555566667777.dkr.ecr.us-west-2.amazonaws.com/other-team/app", TAG);
    expect(ecr.commandCalls(BatchGetImageCommand)[0]!.args[0].input.registryId).toBe("555566667777");
  });

  it("refuses a registryId option that contradicts the host", async () => {
    const checker = new EcrImageChecker({ registryId: "111111111111", credentials: { accessKeyId: "a", secretAccessKey: "s" } });
    const error = await thrown(checker.imageExists(REPO, TAG));
    expect(error.code).toBe("KILN_VALIDATION");
    expect(error.message).toContain("111111111111");
    expect(ecr.commandCalls(BatchGetImageCommand)).toHaveLength(0);
  });

  it("cannot tell for a non-ECR host (throws, never null)", async () => {
    const checker = new EcrImageChecker();
    const error = await thrown(checker.imageExists("ghcr.io/acme/app", TAG));
    expect(error.code).toBe("KILN_CHECK_FAILED");
    expect(error.hint).toMatch(/registryAliases/);
  });

  it("rejects an invalid tag before calling AWS", async () => {
    const error = await thrown(new EcrImageChecker().imageExists(REPO, "bad tag\nRUN x"));
    expect(error.code).toBe("KILN_VALIDATION");
    expect(ecr.commandCalls(BatchGetImageCommand)).toHaveLength(0);
  });
});

describe("EcrImageChecker.imageExists — platforms", () => {
  const checker = () => new EcrImageChecker({ credentials: { accessKeyId: "a", secretAccessKey: "s" } });

  it.each([OCI_INDEX, DOCKER_LIST])("reads platforms from a %s, ignoring attestation entries", async (mediaType) => {
    const manifest = indexManifest(
      [
        { os: "linux", architecture: "amd64" },
        { os: "linux", architecture: "arm64", variant: "v8" },
      ],
      { mediaType, attestations: true },
    );
    ecr.on(BatchGetImageCommand).callsFake(batchGetImage({ manifest, mediaType }));
    expect(await checker().imageExists(REPO, TAG, ["linux/amd64", "linux/arm64"])).toBe(`${REPO}:${TAG}`);
    expect(await checker().imageExists(REPO, TAG, ["linux/arm64"])).toBe(`${REPO}:${TAG}`);
  });

  it("answers absent when a requested platform is missing from the index", async () => {
    ecr.on(BatchGetImageCommand).resolves(image(indexManifest([{ os: "linux", architecture: "amd64" }], { attestations: true }), OCI_INDEX));
    expect(await checker().imageExists(REPO, TAG, ["linux/amd64", "linux/arm64"])).toBeNull();
  });

  it("does not count an attestation entry as a platform", async () => {
    const onlyAttestation = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [{ mediaType: OCI_MANIFEST, digest: "sha256:aa", size: 1, platform: { os: "unknown", architecture: "unknown" } }],
    });
    ecr.on(BatchGetImageCommand).resolves(image(onlyAttestation, OCI_INDEX));
    expect(await checker().imageExists(REPO, TAG, ["linux/amd64"])).toBeNull();
  });

  it.each([
    [DOCKER_MANIFEST, { os: "linux", architecture: "aarch64" }, ["linux/arm64"], true],
    [OCI_MANIFEST, { os: "linux", architecture: "x86_64" }, ["linux/amd64"], true],
    [DOCKER_MANIFEST, { os: "linux", architecture: "amd64" }, ["linux/arm64"], false],
    [OCI_MANIFEST, { os: "linux", architecture: "arm64", variant: "v8" }, ["linux/amd64", "linux/arm64"], false],
  ] as const)("reads a single-arch %s's platform %j from its config blob", async (mediaType, platform, wanted, present) => {
    const single = singleArch(platform, mediaType);
    ecr.on(BatchGetImageCommand).resolves(image(single.manifest, mediaType));
    const url = "https://prod-eu-west-1-starport-layer-bucket.s3.eu-west-1.amazonaws.com/blob?X-Amz-Signature=secret";
    ecr.on(GetDownloadUrlForLayerCommand).resolves({ downloadUrl: url, layerDigest: single.configDigest });
    const { fetch, calls } = blobFetch(url, single.config);
    const uri = await new EcrImageChecker({ credentials: { accessKeyId: "a", secretAccessKey: "s" }, fetch }).imageExists(REPO, TAG, [...wanted]);
    expect(uri).toBe(present ? `${REPO}:${TAG}` : null);
    expect(ecr.commandCalls(GetDownloadUrlForLayerCommand)[0]!.args[0].input).toEqual({
      registryId: "123456789012",
      repositoryName: "team/app",
      layerDigest: single.configDigest,
    });
    expect(calls).toEqual([url]);
  });

  it("cannot tell when the config blob does not match its digest", async () => {
    const single = singleArch({ os: "linux", architecture: "amd64" });
    ecr.on(BatchGetImageCommand).resolves(image(single.manifest, DOCKER_MANIFEST));
    ecr.on(GetDownloadUrlForLayerCommand).resolves({ downloadUrl: "https://s3.example/blob?X-Amz-Signature=secret" });
    const { fetch } = blobFetch("https://s3.example/blob?X-Amz-Signature=secret", single.config.replace("amd64", "arm64"));
    const error = await thrown(new EcrImageChecker({ credentials: { accessKeyId: "a", secretAccessKey: "s" }, fetch }).imageExists(REPO, TAG));
    expect(error.code).toBe("KILN_CHECK_FAILED");
    expect(error.message).toContain(single.configDigest);
  });

  it("cannot tell when the blob download fails, and never reports the presigned query string", async () => {
    const single = singleArch({ os: "linux", architecture: "amd64" });
    ecr.on(BatchGetImageCommand).resolves(image(single.manifest, DOCKER_MANIFEST));
    ecr.on(GetDownloadUrlForLayerCommand).resolves({ downloadUrl: "https://s3.example/blob?X-Amz-Signature=topsecret" });
    const { fetch } = blobFetch("https://elsewhere", "");
    const error = await thrown(new EcrImageChecker({ credentials: { accessKeyId: "a", secretAccessKey: "s" }, fetch }).imageExists(REPO, TAG));
    expect(error.code).toBe("KILN_CHECK_FAILED");
    expect(error.message).toContain("HTTP 404");
    expect(JSON.stringify({ ...error.toJSON(), m: error.message })).not.toContain("topsecret");
  });

  it("cannot tell when GetDownloadUrlForLayer fails", async () => {
    const single = singleArch({ os: "linux", architecture: "amd64" });
    ecr.on(BatchGetImageCommand).resolves(image(single.manifest, DOCKER_MANIFEST));
    ecr.on(GetDownloadUrlForLayerCommand).rejects(new ServerException({ message: "boom", $metadata: { attempts: 4 } }));
    const error = await thrown(new EcrImageChecker({ credentials: { accessKeyId: "a", secretAccessKey: "s" } }).imageExists(REPO, TAG));
    expect(error.code).toBe("KILN_CHECK_FAILED");
    expect(error.details).toMatchObject({ awsError: "ServerException", attempts: 4 });
  });
});

describe("EcrImageChecker.imageExists — absent and could-not-tell", () => {
  const checker = (onWarning?: (w: EcrWarning) => void) =>
    new EcrImageChecker({ credentials: { accessKeyId: "a", secretAccessKey: "s" }, ...(onWarning ? { onWarning } : {}) });

  it("maps an ImageNotFound failure to absent", async () => {
    ecr.on(BatchGetImageCommand).resolves({
      images: [],
      failures: [{ imageId: { imageTag: TAG }, failureCode: "ImageNotFound", failureReason: "Requested image not found" }],
    });
    expect(await checker().imageExists(REPO, TAG)).toBeNull();
  });

  it("maps ImageNotFoundException to absent", async () => {
    ecr.on(BatchGetImageCommand).rejects(new ImageNotFoundException({ message: "not found", $metadata: {} }));
    expect(await checker().imageExists(REPO, TAG)).toBeNull();
  });

  it("maps RepositoryNotFoundException to absent and warns with a create-repository hint", async () => {
    ecr.on(BatchGetImageCommand).rejects(new RepositoryNotFoundException({ message: "The repository does not exist", $metadata: {} }));
    const warnings: EcrWarning[] = [];
    expect(await checker((w) => warnings.push(w)).imageExists(REPO, TAG)).toBeNull();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.code).toBe("KILN_ECR_REPOSITORY_NOT_FOUND");
    expect(warnings[0]!.hint).toContain("aws ecr create-repository --repository-name team/app --region eu-west-1 --registry-id 123456789012");
  });

  it("sends the repository-not-found warning to process warnings by default", async () => {
    ecr.on(BatchGetImageCommand).rejects(new RepositoryNotFoundException({ message: "x", $metadata: {} }));
    const emitWarning = vi.spyOn(process, "emitWarning").mockImplementation(() => undefined);
    expect(await checker().imageExists(REPO, TAG)).toBeNull();
    expect(emitWarning).toHaveBeenCalledWith(
      expect.stringContaining("team/app does not exist"),
      expect.objectContaining({ code: "KILN_ECR_REPOSITORY_NOT_FOUND", detail: expect.stringContaining("create-repository") }),
    );
  });

  it("reports throttling that outlasted the SDK's retries as a RateLimitError (could not tell)", async () => {
    const throttled = Object.assign(new Error("Rate exceeded"), {
      name: "ThrottlingException",
      $metadata: { httpStatusCode: 400, attempts: 4, totalRetryDelay: 2100 },
    });
    ecr.on(BatchGetImageCommand).rejects(throttled);
    const error = await thrown(checker().imageExists(REPO, TAG));
    expect(error.code).toBe("KILN_RATE_LIMIT");
    expect(error.message).toContain("after 4 attempts");
    expect(error.details).toMatchObject({ attempts: 4, totalRetryDelayMs: 2100, registryId: "123456789012", region: "eu-west-1" });
  });

  it("reports access denied as an AuthError", async () => {
    ecr.on(BatchGetImageCommand).rejects(Object.assign(new Error("not authorized"), { name: "AccessDeniedException", $metadata: { httpStatusCode: 400 } }));
    const error = await thrown(checker().imageExists(REPO, TAG));
    expect(error.code).toBe("KILN_AUTH");
    expect(error.hint).toContain("ecr:BatchGetImage");
  });

  it("cannot tell for other BatchGetImage failures (e.g. KmsError)", async () => {
    ecr.on(BatchGetImageCommand).resolves({ images: [], failures: [{ imageId: { imageTag: TAG }, failureCode: "KmsError", failureReason: "kms" }] });
    const error = await thrown(checker().imageExists(REPO, TAG));
    expect(error.code).toBe("KILN_CHECK_FAILED");
    expect(error.details).toMatchObject({ failureCode: "KmsError" });
  });
});

describe("EcrImageChecker as a class (static imageExists, default construction)", () => {
  it("answers through a default instance", async () => {
    ecr.on(BatchGetImageCommand).callsFake(batchGetImage({ manifest: indexManifest([{ os: "linux", architecture: "arm64" }]), mediaType: OCI_INDEX }));
    vi.stubEnv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE");
    vi.stubEnv("AWS_SECRET_ACCESS_KEY", "secret");
    try {
      expect(await EcrImageChecker.imageExists(REPO, TAG, ["linux/arm64"])).toBe(`${REPO}:${TAG}`);
      expect(await EcrImageChecker.imageExists(REPO, TAG, ["linux/amd64"])).toBeNull();
    } finally {
      vi.unstubAllEnvs();
    }
    expect(EcrImageChecker.name).toBe("EcrImageChecker");
  });
});

describe("EcrImageChecker.answersFor (what the engine and strict mode use)", () => {
  it("claims ECR hosts and aliases, and bare names only with an explicit registryId or region", () => {
    expect(new EcrImageChecker().answersFor(REPO)).toBe(true);
    expect(new EcrImageChecker().answersFor("team/app")).toBe(false);
    expect(new EcrImageChecker().answersFor("ghcr.io/acme/app")).toBe(false);
    expect(new EcrImageChecker().answersFor("localhost:5000/app")).toBe(false);
    expect(new EcrImageChecker({ region: "eu-west-1" }).answersFor("team/app")).toBe(true);
    expect(new EcrImageChecker({ registryId: "123456789012" }).answersFor("team/app")).toBe(true);
    expect(
      new EcrImageChecker({ registryAliases: { "registry.example.com": { registryId: "123456789012", region: "eu-west-1" } } }).answersFor(
        "registry.example.com/team/app",
      ),
    ).toBe(true);
    // The old name keeps working for one release.
    expect(new EcrImageChecker().handles("ghcr.io/acme/app")).toBe(false);
  });

  it("through the engine (the class form, as registered): its name is ecr, and another registry's image is not asked", async () => {
    const named = toNamedChecker(EcrImageChecker, "ecr");
    expect(toNamedChecker(EcrImageChecker).name).toBe("ecr");
    expect(named.answersFor?.(REPO)).toBe(true);
    const events: BuildEvent[] = [];
    const error = await runCheckers([named], "ghcr.io/acme/app", TAG, ["linux/amd64"], {
      image: `ghcr.io/acme/app:${TAG}`,
      strict: true,
      onEvent: (e) => events.push(e),
    }).catch((e: unknown) => e);
    expect(CheckFailedError.isInstance(error), String(error)).toBe(true);
    expect((error as Error).message).toMatch(/none of the checkers \(ecr\) answers for ghcr\.io\/acme\/app/);
    expect(events.filter((e) => e.type === "check.start")).toHaveLength(0);
    expect(ecr.commandCalls(BatchGetImageCommand)).toHaveLength(0);
  });
});
