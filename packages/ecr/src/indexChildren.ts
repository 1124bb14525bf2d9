/**
 * An index in ECR is present for a platform only if that platform's child manifest is still in
 * the repository. ECR keeps serving an index whose child was deleted (a lifecycle policy expiring
 * "untagged" images, a manual batch-delete), and `docker pull --platform` of that platform then
 * fails. So each requested platform's child is asked for by digest in one BatchGetImage call: an
 * `ImageNotFound` failure makes that platform missing (the build rebuilds it); any other failure
 * is "could not tell" — a thrown KilnError, never "present".
 */
import { createHash } from "node:crypto";
import { BatchGetImageCommand, type ECRClient } from "@aws-sdk/client-ecr";
import { CheckFailedError, RateLimitError } from "@kiln/core";
import { MANIFEST_MEDIA_TYPES, childDigestsByPlatform } from "@kiln/core/plugin";
import { awsErrorName, toKilnError } from "./awsErrors.js";
import { ecrTimeoutError, requestDeadline, type EcrDeadlineSetting } from "./deadline.js";

export interface ChildLookup {
  client: ECRClient;
  registryId?: string;
  repositoryName: string;
  /** The parsed index document. */
  index: Record<string, unknown>;
  /** Platforms to verify (requested ones the index lists). */
  platforms: readonly string[];
  details: Record<string, unknown>;
  /** Each BatchGetImage call's deadline (SDK retries included). */
  deadline: EcrDeadlineSetting;
  signal?: AbortSignal;
}

/** BatchGetImage takes at most 100 image ids per call. */
const BATCH_LIMIT = 100;

/** The platforms (of `platforms`) whose child manifest the repository no longer holds. */
export async function platformsWithMissingChildren(lookup: ChildLookup): Promise<string[]> {
  const manifests = Array.isArray(lookup.index.manifests) ? (lookup.index.manifests as Parameters<typeof childDigestsByPlatform>[0]["manifests"]) : [];
  const children = childDigestsByPlatform({ manifests }, lookup.platforms);
  const digests = [...new Set([...children.values()].flat())];
  const missing = new Set<string>();
  for (let i = 0; i < digests.length; i += BATCH_LIMIT) {
    for (const digest of await missingDigests(lookup, digests.slice(i, i + BATCH_LIMIT))) missing.add(digest);
  }
  // A platform listed twice needs every entry: a puller may pick either.
  return [...children].filter(([, list]) => list.some((digest) => missing.has(digest))).map(([platform]) => platform);
}

async function missingDigests(lookup: ChildLookup, digests: string[]): Promise<string[]> {
  const { client, repositoryName, details, signal } = lookup;
  const what = `BatchGetImage for the platform manifests of ${repositoryName}`;
  let response;
  const request = requestDeadline(signal, lookup.deadline);
  try {
    response = await client.send(
      new BatchGetImageCommand({
        ...(lookup.registryId ? { registryId: lookup.registryId } : {}),
        repositoryName,
        imageIds: digests.map((imageDigest) => ({ imageDigest })),
        acceptedMediaTypes: [...MANIFEST_MEDIA_TYPES],
      }),
      { abortSignal: request.signal },
    );
  } catch (error) {
    if (request.expired()) throw ecrTimeoutError(what, lookup.deadline, details, error);
    // The repository (or every image) went away since the index was read: nothing of it is held.
    const name = awsErrorName(error);
    if (name === "ImageNotFoundException" || name === "RepositoryNotFoundException") return digests;
    throw toKilnError(error, what, details);
  }
  const held = new Set(
    (response.images ?? []).map((image) => image.imageId?.imageDigest ?? (image.imageManifest ? sha256(image.imageManifest) : undefined)).filter(Boolean),
  );
  const missing: string[] = [];
  for (const digest of digests) {
    if (held.has(digest)) continue;
    const failure = response.failures?.find((f) => f.imageId?.imageDigest === digest);
    const facts = { ...details, digest, failureCode: failure?.failureCode, failureReason: failure?.failureReason };
    if (failure?.failureCode === "ImageNotFound") {
      missing.push(digest);
    } else if (failure?.failureCode === "UpstreamTooManyRequests") {
      throw new RateLimitError(`ECR's upstream registry throttled the platform manifest ${digest} of ${repositoryName}; could not tell whether it exists`, {
        hint: "Retry later; the pull-through cache's upstream registry is rate limiting.",
        details: facts,
      });
    } else {
      throw new CheckFailedError(
        failure
          ? `ECR could not return the platform manifest ${digest} of ${repositoryName} (${failure.failureCode ?? "unknown failure"}: ${failure.failureReason ?? "no reason given"})`
          : `ECR returned neither the platform manifest ${digest} of ${repositoryName} nor a failure for it`,
        { hint: "Retry; if it persists, inspect the index with `docker manifest inspect`. The image's presence is unknown.", details: facts },
      );
    }
  }
  return missing;
}

function sha256(text: string): string {
  return `sha256:${createHash("sha256").update(text).digest("hex")}`;
}
