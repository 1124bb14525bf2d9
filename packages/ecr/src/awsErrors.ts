/**
 * Maps what the AWS SDK throws to Kiln's typed errors. Only names, HTTP status and attempt counts
 * are read; request signatures and credentials are never copied into messages or details.
 */
import { AuthError, CheckFailedError, KilnError, RateLimitError } from "@kiln/core";

const THROTTLING = new Set([
  "ThrottlingException",
  "ThrottledException",
  "TooManyRequestsException",
  "RequestLimitExceeded",
  "RequestThrottled",
  "RequestThrottledException",
  "ProvisionedThroughputExceededException",
  "SlowDown",
]);

const AUTH = new Set([
  "AccessDeniedException",
  "AccessDenied",
  "UnrecognizedClientException",
  "InvalidSignatureException",
  "SignatureDoesNotMatch",
  "ExpiredTokenException",
  "ExpiredToken",
  "InvalidClientTokenId",
  "CredentialsProviderError",
  "TokenProviderError",
]);

export interface AwsErrorShape {
  name?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number; attempts?: number; totalRetryDelay?: number; requestId?: string };
  $retryable?: { throttling?: boolean };
}

export function awsErrorName(error: unknown): string | undefined {
  return typeof error === "object" && error !== null ? ((error as AwsErrorShape).name ?? undefined) : undefined;
}

export function isThrottling(error: unknown): boolean {
  const e = error as AwsErrorShape;
  return THROTTLING.has(awsErrorName(error) ?? "") || e?.$metadata?.httpStatusCode === 429 || e?.$retryable?.throttling === true;
}

/** Facts worth keeping from an SDK error: how many attempts the retry strategy made, the request id. */
export function retryFacts(error: unknown): Record<string, unknown> {
  const meta = (error as AwsErrorShape)?.$metadata;
  const facts: Record<string, unknown> = {};
  if (meta?.attempts !== undefined) facts.attempts = meta.attempts;
  if (meta?.totalRetryDelay !== undefined) facts.totalRetryDelayMs = meta.totalRetryDelay;
  if (meta?.httpStatusCode !== undefined) facts.httpStatus = meta.httpStatusCode;
  if (meta?.requestId !== undefined) facts.requestId = meta.requestId;
  return facts;
}

/**
 * "Could not tell": an ECR call failed for a reason other than absence. Always a KilnError —
 * RateLimitError (throttled after the SDK's retries), AuthError, or CheckFailedError.
 */
export function toKilnError(error: unknown, what: string, details: Record<string, unknown>, purpose: "check" | "credentials" = "check"): KilnError {
  if (KilnError.isInstance(error)) return error;
  const name = awsErrorName(error) ?? "Error";
  const awsMessage = oneLine((error as AwsErrorShape)?.message ?? String(error));
  const facts: Record<string, unknown> = { ...details, awsError: name, ...retryFacts(error) };
  if (isThrottling(error)) {
    const attempts = facts.attempts === undefined ? "" : ` after ${String(facts.attempts)} attempts`;
    const consequence = purpose === "check" ? "could not tell whether the image exists" : "no push credentials";
    return new RateLimitError(`ECR throttled ${what}${attempts}; ${consequence}`, {
      hint: 'Retry later, raise maxAttempts or use retryMode "adaptive", or ask AWS to raise the ECR API rate quota.',
      cause: error,
      details: facts,
    });
  }
  if (AUTH.has(name) || (error as AwsErrorShape)?.$metadata?.httpStatusCode === 403) {
    const message = name === "CredentialsProviderError" ? `No AWS credentials for ECR ${what} (${awsMessage})` : `ECR refused ${what} (${name}: ${awsMessage})`;
    return new AuthError(message, {
      hint:
        name === "CredentialsProviderError"
          ? "No AWS credentials were found: set AWS_PROFILE (and run `aws sso login` for SSO), AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run on an instance/task with a role."
          : "Check that the AWS identity in use may call ecr:BatchGetImage, ecr:GetDownloadUrlForLayer and ecr:GetAuthorizationToken on this registry, and that its session has not expired.",
      cause: error,
      details: facts,
    });
  }
  if (purpose === "credentials") {
    return new AuthError(`ECR ${what} failed (${name}: ${awsMessage}); no push credentials`, {
      hint: "Check the region, the registry id and the network path to the ECR API endpoint, or log in with `aws ecr get-login-password | docker login`.",
      cause: error,
      details: facts,
    });
  }
  return new CheckFailedError(`ECR ${what} failed (${name}: ${awsMessage})`, {
    hint: "Check the region, the registry id and the network path to the ECR API endpoint.",
    cause: error,
    details: facts,
  });
}

function oneLine(text: string): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > 300 ? `${flat.slice(0, 297)}...` : flat;
}
