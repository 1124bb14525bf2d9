/**
 * The real SDK path: ECRClient → signing → JSON 1.1 over HTTP → the fake ECR endpoint, with the
 * SDK's own retry strategy and the standard credential chain (env, then a named profile).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { KilnError } from "@kiln/core";
import { EcrImageChecker } from "../src/checker.js";
import { createEcrCredentialProvider } from "../src/credentials.js";
import type { EcrWarning } from "../src/warnings.js";
import { FakeEcr } from "./fakeEcr.js";
import { DOCKER_MANIFEST, OCI_INDEX, indexManifest, indexWithChildren, singleArch } from "./manifests.js";

const ACCOUNT = "123456789012";
const HOST = `${ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com`;
const TAG = "0123456789abcdef0123456789abcdef";

let ecr: FakeEcr;
let awsDir: string;

beforeAll(async () => {
  ecr = await new FakeEcr().start();
  awsDir = await mkdtemp(path.join(os.tmpdir(), "kiln-ecr-aws-"));
  await writeFile(path.join(awsDir, "credentials"), "[kiln-wire]\naws_access_key_id = AKIDFROMPROFILE\naws_secret_access_key = profile-secret\n");
  await writeFile(path.join(awsDir, "config"), "[profile kiln-wire]\nregion = eu-north-1\n");
});
afterAll(async () => {
  await ecr.stop();
  await rm(awsDir, { recursive: true, force: true });
});
beforeEach(() => {
  // The standard chain, isolated from this machine: env credentials, our own shared files, no IMDS.
  vi.stubEnv("AWS_ACCESS_KEY_ID", "AKIDFROMENV");
  vi.stubEnv("AWS_SECRET_ACCESS_KEY", "env-secret");
  vi.stubEnv("AWS_SESSION_TOKEN", "");
  vi.stubEnv("AWS_PROFILE", "");
  vi.stubEnv("AWS_SHARED_CREDENTIALS_FILE", path.join(awsDir, "credentials"));
  vi.stubEnv("AWS_CONFIG_FILE", path.join(awsDir, "config"));
  vi.stubEnv("AWS_EC2_METADATA_DISABLED", "true");
  ecr.requests.length = 0;
  ecr.blobRequests.length = 0;
  ecr.throttle.clear();
});
afterEach(() => vi.unstubAllEnvs());

const checker = (options: ConstructorParameters<typeof EcrImageChecker>[0] = {}) => new EcrImageChecker({ endpoint: ecr.url, ...options });

describe("EcrImageChecker over the wire", () => {
  it("sends a signed JSON 1.1 BatchGetImage and reads platforms from the returned index", async () => {
    ecr.addImage(
      ACCOUNT,
      "team/multi",
      TAG,
      indexWithChildren(
        [
          { os: "linux", architecture: "amd64" },
          { os: "linux", architecture: "arm64", variant: "v8" },
        ],
        { attestations: true },
      ),
    );
    const c = checker();
    expect(await c.imageExists(`${HOST}/team/multi`, TAG, ["linux/amd64", "linux/arm64"])).toBe(`${HOST}/team/multi:${TAG}`);
    c.destroy();

    const [request] = ecr.calls("BatchGetImage");
    expect(request!.headers["x-amz-target"]).toBe("AmazonEC2ContainerRegistry_V20150921.BatchGetImage");
    expect(request!.headers["content-type"]).toBe("application/x-amz-json-1.1");
    // SigV4 scoped to the host's region and the ECR service, with the env credentials of the chain.
    expect(request!.headers.authorization).toMatch(/^AWS4-HMAC-SHA256 Credential=AKIDFROMENV\/\d{8}\/us-east-1\/ecr\/aws4_request/);
    expect(request!.body).toEqual({
      registryId: ACCOUNT,
      repositoryName: "team/multi",
      imageIds: [{ imageTag: TAG }],
      acceptedMediaTypes: [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
      ],
    });
  });

  it("reads a single-arch image's platform from its config blob (GetDownloadUrlForLayer + GET)", async () => {
    const single = singleArch({ os: "linux", architecture: "arm64" });
    ecr.addBlob(single.config);
    ecr.addImage(ACCOUNT, "single", TAG, { manifest: single.manifest, mediaType: DOCKER_MANIFEST });
    const c = checker();
    expect(await c.imageExists(`${HOST}/single`, TAG, ["linux/arm64"])).toBe(`${HOST}/single:${TAG}`);
    expect(await c.imageExists(`${HOST}/single`, TAG, ["linux/amd64"])).toBeNull();
    c.destroy();
    expect(ecr.calls("GetDownloadUrlForLayer").map((r) => r.body)).toEqual([
      { registryId: ACCOUNT, repositoryName: "single", layerDigest: single.configDigest },
      { registryId: ACCOUNT, repositoryName: "single", layerDigest: single.configDigest },
    ]);
    expect(ecr.blobRequests).toHaveLength(2);
  });

  it("maps ImageNotFound to absent and RepositoryNotFoundException to absent with a warning", async () => {
    ecr.repositories.add(`${ACCOUNT}/exists`);
    const warnings: EcrWarning[] = [];
    const c = checker({ onWarning: (w) => warnings.push(w) });
    expect(await c.imageExists(`${HOST}/exists`, TAG)).toBeNull();
    expect(warnings).toEqual([]);
    expect(await c.imageExists(`${HOST}/missing-repo`, TAG)).toBeNull();
    c.destroy();
    expect(warnings.map((w) => w.code)).toEqual(["KILN_ECR_REPOSITORY_NOT_FOUND"]);
    expect(warnings[0]!.hint).toContain("create-repository --repository-name missing-repo --region us-east-1");
  });

  it("retries ThrottlingException with the SDK's retry strategy and then answers", async () => {
    ecr.addImage(ACCOUNT, "throttled", TAG, indexWithChildren([{ os: "linux", architecture: "amd64" }]));
    ecr.throttle.set("BatchGetImage", 2);
    const c = checker({ maxAttempts: 3, retryMode: "standard" });
    expect(await c.imageExists(`${HOST}/throttled`, TAG)).toBe(`${HOST}/throttled:${TAG}`);
    c.destroy();
    // Three attempts for the tag, then one for its linux/amd64 child by digest.
    const calls = ecr.calls("BatchGetImage");
    expect(calls).toHaveLength(4);
    // The SDK marks its retries: attempt=N in amz-sdk-request.
    expect(calls.slice(0, 3).map((r) => /attempt=(\d+)/.exec(String(r.headers["amz-sdk-request"]))?.[1])).toEqual(["1", "2", "3"]);
  });

  it.each(["standard", "adaptive"] as const)("reports throttling past maxAttempts as could-not-tell (%s retry mode)", async (retryMode) => {
    ecr.addImage(ACCOUNT, "always-throttled", TAG, { manifest: indexManifest([{ os: "linux", architecture: "amd64" }]), mediaType: OCI_INDEX });
    ecr.throttle.set("BatchGetImage", 100);
    const c = checker({ maxAttempts: 2, retryMode });
    const error = (await c.imageExists(`${HOST}/always-throttled`, TAG).catch((e: unknown) => e)) as KilnError;
    c.destroy();
    expect(KilnError.isInstance(error)).toBe(true);
    expect(error.code).toBe("KILN_RATE_LIMIT");
    expect(error.details).toMatchObject({ attempts: 2, awsError: "ThrottlingException", httpStatus: 400 });
    expect(ecr.calls("BatchGetImage")).toHaveLength(2);
  });

  it("uses a named profile from the shared config files", async () => {
    vi.stubEnv("AWS_ACCESS_KEY_ID", "");
    vi.stubEnv("AWS_SECRET_ACCESS_KEY", "");
    ecr.repositories.add(`${ACCOUNT}/profiled`);
    const c = checker({ profile: "kiln-wire" });
    expect(await c.imageExists(`${HOST}/profiled`, TAG)).toBeNull();
    c.destroy();
    expect(ecr.calls("BatchGetImage")[0]!.headers.authorization).toMatch(/Credential=AKIDFROMPROFILE\/\d{8}\/us-east-1\/ecr\//);
  });

  it("fails with an AuthError naming the fix when the chain finds no credentials", async () => {
    vi.stubEnv("AWS_ACCESS_KEY_ID", "");
    vi.stubEnv("AWS_SECRET_ACCESS_KEY", "");
    vi.stubEnv("AWS_SHARED_CREDENTIALS_FILE", path.join(awsDir, "none"));
    vi.stubEnv("AWS_CONFIG_FILE", path.join(awsDir, "none"));
    const c = checker();
    const error = (await c.imageExists(`${HOST}/any`, TAG).catch((e: unknown) => e)) as KilnError;
    c.destroy();
    expect(error.code).toBe("KILN_AUTH");
    expect(error.hint).toContain("AWS_PROFILE");
    expect(ecr.calls("BatchGetImage")).toHaveLength(0);
  });
});

describe("ECR credential provider over the wire", () => {
  it("gets, decodes and caches GetAuthorizationToken; throttling is retried by the SDK", async () => {
    ecr.throttle.set("GetAuthorizationToken", 1);
    const provider = createEcrCredentialProvider({ endpoint: ecr.url, maxAttempts: 3, env: { DOCKER_CONFIG: awsDir } });
    const [a, b] = await Promise.all([provider.getCredentials(HOST), provider.getCredentials(HOST)]);
    expect(a).toEqual({ username: "AWS", password: "fake-ecr-password" });
    expect(b).toEqual(a);
    expect(await provider.getCredentials(HOST)).toEqual(a);
    provider.destroy();
    const calls = ecr.calls("GetAuthorizationToken");
    expect(calls).toHaveLength(2); // one throttled attempt + one success, shared by all three callers
    expect(calls[1]!.body).toEqual({ registryIds: [ACCOUNT] });
    expect(calls[1]!.headers.authorization).toMatch(/\/us-east-1\/ecr\/aws4_request/);
  });

  it("steps aside (undefined) when the chain finds no AWS credentials, so a docker login still answers", async () => {
    vi.stubEnv("AWS_ACCESS_KEY_ID", "");
    vi.stubEnv("AWS_SECRET_ACCESS_KEY", "");
    vi.stubEnv("AWS_SHARED_CREDENTIALS_FILE", path.join(awsDir, "none"));
    vi.stubEnv("AWS_CONFIG_FILE", path.join(awsDir, "none"));
    const provider = createEcrCredentialProvider({ endpoint: ecr.url, env: { DOCKER_CONFIG: awsDir } });
    expect(await provider.getCredentials(HOST)).toBeUndefined();
    provider.destroy();
    expect(ecr.calls("GetAuthorizationToken")).toHaveLength(0);
  });
});
