/**
 * Issue 12 through the ECR checker:
 * - item 3: an index is present only if the platforms in it are — each requested platform's child
 *   manifest is asked for by digest (BatchGetImage); a child ECR no longer holds makes that
 *   platform absent, any other failure is "could not tell" (a thrown KilnError, never present);
 *   attestation entries are never asked about;
 * - item 7c: every ECR request has a total deadline (option `timeoutMs`, KILN_REGISTRY_TIMEOUT_MS),
 *   and the engine's signal reaches the requests through withEcrChecker.
 * The real SDK against the wire-level fake ECR endpoint, plus aws-sdk-client-mock for SDK errors.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { BatchGetImageCommand, ECRClient, ServerException, type BatchGetImageCommandInput } from "@aws-sdk/client-ecr";
import { mockClient } from "aws-sdk-client-mock";
import { CancelledError, KilnError, RegistryTimeoutError, toNamedChecker, type ImageBuilder } from "@kiln/core";
import { EcrImageChecker } from "../src/checker.js";
import { withEcrChecker } from "../src/withEcrChecker.js";
import { batchGetImage } from "./batchGetImage.js";
import { FakeEcr } from "./fakeEcr.js";
import { DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, indexWithChildren, singleArch } from "./manifests.js";

const ACCOUNT = "123456789012";
const HOST = `${ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com`;
const TAG = "0123456789abcdef0123456789abcdef";
const AMD64 = { os: "linux", architecture: "amd64" };
const ARM64 = { os: "linux", architecture: "arm64", variant: "v8" };
const credentials = { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "s" };

async function failure(pending: Promise<unknown>): Promise<KilnError> {
  try {
    const answer = await pending;
    throw new Error(`expected "could not tell", got ${JSON.stringify(answer)}`);
  } catch (error) {
    expect(KilnError.isInstance(error), String(error)).toBe(true);
    return error as KilnError;
  }
}

describe("over the wire (fake ECR endpoint)", () => {
  let ecr: FakeEcr;
  const checker = (options: ConstructorParameters<typeof EcrImageChecker>[0] = {}) =>
    new EcrImageChecker({ endpoint: ecr.url, credentials, maxAttempts: 2, ...options });
  const digestLookups = () => ecr.calls("BatchGetImage").filter((r) => r.body.imageIds.some((id: { imageDigest?: string }) => id.imageDigest));

  beforeAll(async () => {
    ecr = await new FakeEcr().start();
  });
  afterAll(async () => {
    await ecr.stop();
  });
  beforeEach(() => {
    ecr.requests.length = 0;
    ecr.blobRequests.length = 0;
    ecr.hang.clear();
    ecr.hangIf = undefined;
    ecr.failingDigests.clear();
  });
  afterEach(() => vi.unstubAllEnvs());

  it.each([OCI_INDEX, DOCKER_LIST])("a %s whose arm64 child was deleted: absent for linux/amd64+linux/arm64, present for linux/amd64", async (mediaType) => {
    const repository = `gone-${mediaType === OCI_INDEX ? "oci" : "list"}`;
    const image = indexWithChildren([AMD64, ARM64], { mediaType, attestations: mediaType === OCI_INDEX });
    ecr.addImage(ACCOUNT, repository, TAG, image);
    ecr.deleteManifest(ACCOUNT, repository, image.children[1]!.digest);
    const c = checker();
    expect(await c.imageExists(`${HOST}/${repository}`, TAG, ["linux/amd64", "linux/arm64"])).toBeNull();
    // One lookup by digest for the requested platforms' children; attestation entries are not asked about.
    expect(digestLookups().map((r) => r.body.imageIds)).toEqual([[{ imageDigest: image.children[0]!.digest }, { imageDigest: image.children[1]!.digest }]]);
    expect(digestLookups()[0]!.body.acceptedMediaTypes).toHaveLength(4);
    expect(await c.imageExists(`${HOST}/${repository}`, TAG, ["linux/amd64"])).toBe(`${HOST}/${repository}:${TAG}`);
    c.destroy();
  });

  it("a child ECR cannot return (KmsError): could not tell, never present", async () => {
    const image = indexWithChildren([AMD64, ARM64]);
    ecr.addImage(ACCOUNT, "kms", TAG, image);
    ecr.failingDigests.set(image.children[1]!.digest, "KmsError");
    const c = checker();
    const error = await failure(c.imageExists(`${HOST}/kms`, TAG, ["linux/amd64", "linux/arm64"]));
    expect(error.code).toBe("KILN_CHECK_FAILED");
    expect(error.details).toMatchObject({ failureCode: "KmsError", digest: image.children[1]!.digest });
    c.destroy();
  });

  it("a child lookup that never answers: RegistryTimeoutError at the checker's deadline, never present", async () => {
    ecr.addImage(ACCOUNT, "slow-child", TAG, indexWithChildren([AMD64, ARM64]));
    ecr.hangIf = (operation, body) => operation === "BatchGetImage" && body.imageIds.some((id: { imageDigest?: string }) => id.imageDigest);
    const c = checker({ timeoutMs: 800 });
    const started = Date.now();
    const error = await failure(c.imageExists(`${HOST}/slow-child`, TAG, ["linux/amd64", "linux/arm64"]));
    expect(RegistryTimeoutError.isInstance(error), String(error)).toBe(true);
    expect(error.hint).toContain("timeoutMs (now 800)");
    expect(Date.now() - started).toBeLessThan(3_000);
    c.destroy();
  });

  it("BatchGetImage that never answers, KILN_REGISTRY_TIMEOUT_MS=1000: RegistryTimeoutError naming the variable within the deadline", async () => {
    ecr.addImage(ACCOUNT, "stalled", TAG, indexWithChildren([AMD64]));
    ecr.hang.add("BatchGetImage");
    vi.stubEnv("KILN_REGISTRY_TIMEOUT_MS", "1000");
    const c = checker();
    const started = Date.now();
    const error = await failure(c.imageExists(`${HOST}/stalled`, TAG, ["linux/amd64"]));
    expect(RegistryTimeoutError.isInstance(error), String(error)).toBe(true);
    expect(error.hint).toContain("KILN_REGISTRY_TIMEOUT_MS (now 1000)");
    expect(Date.now() - started).toBeLessThan(3_000);
    c.destroy();
  }, 15_000);

  it("a config blob download that never answers: RegistryTimeoutError at the deadline, not a 30 s wait", async () => {
    const single = singleArch({ os: "linux", architecture: "arm64" });
    ecr.addBlob(single.config);
    ecr.addImage(ACCOUNT, "slow-blob", TAG, { manifest: single.manifest, mediaType: DOCKER_MANIFEST });
    ecr.hang.add("blob");
    const c = checker({ timeoutMs: 800 });
    const started = Date.now();
    const error = await failure(c.imageExists(`${HOST}/slow-blob`, TAG, ["linux/arm64"]));
    expect(RegistryTimeoutError.isInstance(error), String(error)).toBe(true);
    // The presigned URL's query (a credential) is never reported.
    expect(JSON.stringify([error.message, error.hint, error.details])).not.toContain("presigned-secret");
    expect(Date.now() - started).toBeLessThan(3_000);
    c.destroy();
  }, 15_000);

  it("withEcrChecker passes the engine's signal on: an abort while BatchGetImage hangs is a CancelledError at once", async () => {
    ecr.addImage(ACCOUNT, "wrapped", TAG, indexWithChildren([AMD64]));
    ecr.hang.add("BatchGetImage");
    const inner = { buildImage: async () => ({ uri: null }), getCheckers: () => [] } as unknown as ImageBuilder;
    const [first] = (withEcrChecker(inner, { endpoint: ecr.url, credentials, timeoutMs: 60_000 }).getCheckers!() ?? []).map((c) => toNamedChecker(c));
    const controller = new AbortController();
    const pending = first!.imageExists(`${HOST}/wrapped`, TAG, ["linux/amd64"], { signal: controller.signal });
    const deadline = Date.now() + 5_000;
    while (ecr.calls("BatchGetImage").length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    const abortedAt = Date.now();
    controller.abort();
    const error = await pending.then(
      (answer) => new Error(`expected a cancellation, got ${String(answer)}`),
      (e: unknown) => e,
    );
    expect(CancelledError.isInstance(error), String(error)).toBe(true);
    expect(Date.now() - abortedAt).toBeLessThan(1_000);
  }, 15_000);
});

describe("SDK errors on the child lookup (aws-sdk-client-mock)", () => {
  // Made here, not at load time: mockClient stubs every ECRClient, the wire tests' too.
  const mockEcr = () => mockClient(ECRClient);
  let ecr: ReturnType<typeof mockEcr>;
  beforeAll(() => {
    ecr = mockEcr();
  });
  afterAll(() => ecr.restore());
  beforeEach(() => ecr.reset());
  const checker = () => new EcrImageChecker({ credentials });
  const REPO = `${HOST}/team/app`;

  it("a 5xx from BatchGetImage by digest: could not tell (thrown), never present", async () => {
    const image = indexWithChildren([AMD64, ARM64]);
    const tagged = batchGetImage({ manifest: image.manifest, mediaType: OCI_INDEX });
    ecr.on(BatchGetImageCommand).callsFake((input: BatchGetImageCommandInput) => {
      if (input.imageIds?.some((id: { imageDigest?: string }) => id.imageDigest)) {
        throw new ServerException({ message: "We encountered an internal error", $metadata: { httpStatusCode: 500 } });
      }
      return tagged(input);
    });
    const error = await failure(checker().imageExists(REPO, TAG, ["linux/amd64", "linux/arm64"]));
    expect(error.code).toBe("KILN_CHECK_FAILED");
    expect(error.details).toMatchObject({ awsError: "ServerException" });
  });

  it("an upstream throttling failure for a child (pull-through cache): RateLimitError, never present", async () => {
    const image = indexWithChildren([AMD64, ARM64]);
    ecr
      .on(BatchGetImageCommand)
      .callsFake(batchGetImage({ manifest: image.manifest, mediaType: OCI_INDEX }, { failing: { [image.children[1]!.digest]: "UpstreamTooManyRequests" } }));
    const error = await failure(checker().imageExists(REPO, TAG, ["linux/amd64", "linux/arm64"]));
    expect(error.code).toBe("KILN_RATE_LIMIT");
  });

  it("a child ECR says it does not hold (ImageNotFound): absent; the other platform alone: present", async () => {
    const image = indexWithChildren([AMD64, ARM64]);
    ecr.on(BatchGetImageCommand).callsFake(batchGetImage({ manifest: image.manifest, mediaType: OCI_INDEX }, { missing: [image.children[1]!.digest] }));
    expect(await checker().imageExists(REPO, TAG, ["linux/amd64", "linux/arm64"])).toBeNull();
    expect(await checker().imageExists(REPO, TAG, ["linux/amd64"])).toBe(`${REPO}:${TAG}`);
  });
});
