/**
 * The platform of a single-arch image lives only in its config blob. ECR hands out blobs through
 * GetDownloadUrlForLayer (a short-lived presigned URL); the blob is fetched, size-capped and
 * checked against its digest before its os/architecture are trusted.
 */
import { createHash } from "node:crypto";
import { GetDownloadUrlForLayerCommand, type ECRClient } from "@aws-sdk/client-ecr";
import { CheckFailedError } from "@kiln/core";
import { toKilnError } from "./awsErrors.js";
import { ecrTimeoutError, requestDeadline, resolveDeadline, type EcrDeadlineSetting } from "./deadline.js";

export interface PlatformFields {
  os?: string;
  architecture?: string;
  variant?: string;
}

export type FetchLike = (url: string, init?: { signal?: AbortSignal }) => Promise<Response>;

export interface ConfigBlobRequest {
  client: ECRClient;
  registryId?: string;
  repositoryName: string;
  digest: string;
  fetch?: FetchLike;
  /** Config blobs are a few KB; anything past this is refused rather than buffered. */
  maxBytes?: number;
  /** Deadline of the API call and of the download, each (default: KILN_REGISTRY_TIMEOUT_MS, else 30 s). */
  deadline?: EcrDeadlineSetting;
  /** Cancels both the API call and the download (the caller's signal, combined with the timeout). */
  signal?: AbortSignal;
  details: Record<string, unknown>;
}

const DEFAULT_MAX_BYTES = 4 * 1024 * 1024;

export async function fetchConfigPlatform(request: ConfigBlobRequest): Promise<PlatformFields> {
  const { client, repositoryName, digest, details } = request;
  const deadline = request.deadline ?? resolveDeadline(undefined);
  const what = `GetDownloadUrlForLayer for the config blob ${digest} of ${repositoryName}`;
  const call = requestDeadline(request.signal, deadline);
  let url: string | undefined;
  try {
    const response = await client.send(
      new GetDownloadUrlForLayerCommand({
        ...(request.registryId ? { registryId: request.registryId } : {}),
        repositoryName,
        layerDigest: digest,
      }),
      { abortSignal: call.signal },
    );
    url = response.downloadUrl;
  } catch (error) {
    if (call.expired()) throw ecrTimeoutError(`ECR ${what}`, deadline, details, error);
    throw toKilnError(error, what, details);
  }
  if (!url) {
    throw new CheckFailedError(`ECR returned no download URL for the config blob ${digest} of ${repositoryName}`, {
      hint: "Retry; if it persists the image's config blob may be missing from the repository.",
      details: { ...details, digest },
    });
  }
  const body = await download(url, request, deadline);
  const actual = `sha256:${createHash("sha256").update(body).digest("hex")}`;
  if (digest.startsWith("sha256:") && actual !== digest) {
    throw new CheckFailedError(`The config blob of ${repositoryName} does not match its digest ${digest}`, {
      hint: "The download was altered in transit or the registry is inconsistent; retry.",
      details: { ...details, digest, actual },
    });
  }
  try {
    const config = JSON.parse(body.toString("utf8")) as PlatformFields;
    return { os: config.os, architecture: config.architecture, variant: config.variant };
  } catch (error) {
    throw new CheckFailedError(`The config blob ${digest} of ${repositoryName} is not JSON`, {
      hint: "The image may not be a container image; check it with `docker manifest inspect`.",
      cause: error,
      details: { ...details, digest },
    });
  }
}

async function download(url: string, request: ConfigBlobRequest, deadline: EcrDeadlineSetting): Promise<Buffer> {
  const fetchImpl = request.fetch ?? (globalThis.fetch as FetchLike);
  const maxBytes = request.maxBytes ?? DEFAULT_MAX_BYTES;
  // The URL is presigned: its query string is a credential, so only the host is ever reported.
  const where = safeHost(url);
  // Either the deadline or the caller's cancellation ends the download — headers and body alike.
  const call = requestDeadline(request.signal, deadline);
  const timedOut = (error: unknown) =>
    ecrTimeoutError(`The download of the config blob ${request.digest} from ${where}`, deadline, { ...request.details, digest: request.digest }, error);
  let response: Response;
  try {
    response = await fetchImpl(url, { signal: call.signal });
  } catch (error) {
    if (call.expired()) throw timedOut(error);
    throw new CheckFailedError(`Could not download the config blob ${request.digest} from ${where}`, {
      hint: "Check network access to the ECR layer storage (S3) endpoint.",
      cause: error,
      details: { ...request.details, digest: request.digest },
    });
  }
  if (!response.ok || !response.body) {
    throw new CheckFailedError(`Downloading the config blob ${request.digest} from ${where} returned HTTP ${response.status}`, {
      hint: "Retry; the presigned URL may have expired or access to the layer storage is blocked.",
      details: { ...request.details, digest: request.digest, httpStatus: response.status },
    });
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      size += chunk.byteLength;
      if (size > maxBytes) {
        throw new CheckFailedError(`The config blob ${request.digest} is larger than ${maxBytes} bytes`, {
          hint: "An image config is a few kilobytes; this digest does not point to one.",
          details: { ...request.details, digest: request.digest },
        });
      }
      chunks.push(Buffer.from(chunk));
    }
  } catch (error) {
    if (call.expired()) throw timedOut(error);
    throw error;
  }
  return Buffer.concat(chunks);
}

function safeHost(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return "the download URL";
  }
}
