/**
 * Core's checker conformance suite, run against the real SDK talking to the fake ECR endpoint:
 * once with a configured instance (multi-arch index), once with the class form (static
 * imageExists, default construction, endpoint from AWS_ENDPOINT_URL_ECR) on a single-arch image.
 * The suite proves cancellation over the real SDK path (the signal reaches `send(command, {
 * abortSignal })`); the extra test covers the second request a single-arch check makes, the
 * config blob download.
 */
import { CancelledError } from "@kiln/core";
import { describeCheckerConformance } from "@kiln/core/testing";
import { expect, it } from "vitest";
import { EcrImageChecker } from "../src/checker.js";
import { FakeEcr } from "./fakeEcr.js";
import { DOCKER_MANIFEST, DOCKER_LIST, indexWithChildren, singleArch } from "./manifests.js";

const ACCOUNT = "123456789012";
const HOST = `${ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com`;
const credentials = { accessKeyId: "AKIDCONFORMANCE", secretAccessKey: "conformance-secret" };

describeCheckerConformance(
  "EcrImageChecker (instance, multi-arch index)",
  async () => {
    const ecr = await new FakeEcr().start();
    ecr.addImage(ACCOUNT, "team/multi", "v1", indexWithChildren([{ os: "linux", architecture: "amd64" }], { mediaType: DOCKER_LIST, attestations: true }));
    const checker = new EcrImageChecker({ endpoint: ecr.url, credentials });
    return {
      checker,
      present: { repository: `${HOST}/team/multi`, tag: "v1", platforms: ["linux/amd64"] },
      absent: { repository: `${HOST}/team/multi`, tag: "nope", platforms: ["linux/amd64"] },
      wrongArch: { repository: `${HOST}/team/multi`, tag: "v1", platforms: ["linux/amd64", "linux/arm64"] },
      // Nothing listens on port 1: the SDK cannot reach ECR, so the checker must throw.
      failing: () => new EcrImageChecker({ endpoint: "http://127.0.0.1:1", credentials, maxAttempts: 1 }),
      cleanup: async () => {
        checker.destroy();
        await ecr.stop();
      },
    };
  },
  {
    // ECR's API played by a server that never answers: the SDK's BatchGetImage hangs until the abort.
    hanging: (server) => {
      const checker = new EcrImageChecker({ endpoint: server.url, credentials, maxAttempts: 4 });
      return { checker, target: { repository: `${HOST}/team/multi`, tag: "v1", platforms: ["linux/amd64"] }, cleanup: () => checker.destroy() };
    },
  },
);

async function until(condition: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

let singleArchEcr: FakeEcr;

describeCheckerConformance(
  "EcrImageChecker (class with static imageExists, single-arch config)",
  async () => {
    const ecr = await new FakeEcr().start();
    singleArchEcr = ecr;
    const single = singleArch({ os: "linux", architecture: "amd64" });
    ecr.addBlob(single.config);
    ecr.addImage(ACCOUNT, "single", "v1", { manifest: single.manifest, mediaType: DOCKER_MANIFEST });
    // Default construction reads everything from the environment, as a user's CLI run would.
    const saved = { ...process.env };
    Object.assign(process.env, {
      AWS_ENDPOINT_URL_ECR: ecr.url,
      AWS_ACCESS_KEY_ID: credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
      AWS_EC2_METADATA_DISABLED: "true",
    });
    return {
      checker: EcrImageChecker,
      present: { repository: `${HOST}/single`, tag: "v1", platforms: ["linux/amd64"] },
      absent: { repository: `${HOST}/single`, tag: "nope", platforms: ["linux/amd64"] },
      wrongArch: { repository: `${HOST}/single`, tag: "v1", platforms: ["linux/amd64", "linux/arm64"] },
      // Same image, but the config blob's download is refused: its platform is unknowable.
      failing: () => new EcrImageChecker({ endpoint: ecr.url, credentials, fetch: async () => new Response("denied", { status: 403 }) }),
      cleanup: async () => {
        for (const key of ["AWS_ENDPOINT_URL_ECR", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_EC2_METADATA_DISABLED"]) {
          if (saved[key] === undefined) delete process.env[key];
          else process.env[key] = saved[key];
        }
        await ecr.stop();
      },
    };
  },
  {
    extraTests: () => {
      it("aborting while the config blob download hangs: CancelledError within 1 s, connection closed", async () => {
        const ecr = singleArchEcr;
        ecr.blobRequests.length = 0; // the suite's own checks downloaded the blob before
        ecr.hang.add("blob");
        const checker = new EcrImageChecker({ endpoint: ecr.url, credentials, maxAttempts: 4 });
        try {
          const controller = new AbortController();
          const pending = checker.imageExists(`${HOST}/single`, "v1", ["linux/amd64"], { signal: controller.signal }).catch((error: unknown) => error);
          await until(() => ecr.blobRequests.length === 1);
          const closedBefore = ecr.connections.closed;
          const abortedAt = Date.now();
          controller.abort();
          const error = await pending;
          expect(CancelledError.isInstance(error), String(error)).toBe(true);
          expect(Date.now() - abortedAt).toBeLessThan(1_000);
          await until(() => ecr.connections.closed > closedBefore, 1_000);
          expect(ecr.blobRequests).toHaveLength(1);
        } finally {
          ecr.hang.delete("blob");
          ecr.blobRequests.length = 0;
          checker.destroy();
        }
      });
    },
  },
);
