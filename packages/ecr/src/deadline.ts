/**
 * The total deadline of each ECR request — BatchGetImage, GetDownloadUrlForLayer, the config blob
 * download — the SDK's own retries included: the checker option `timeoutMs`, else
 * KILN_REGISTRY_TIMEOUT_MS, else 30 s (the same setting as core's registry client). The SDK sets no
 * overall limit of its own, so without it a stalled ECR endpoint would hold a check forever. It
 * composes with the caller's AbortSignal: the caller's abort stays a CancelledError, the deadline
 * becomes a RegistryTimeoutError ("could not tell", never "absent").
 */
import { RegistryTimeoutError } from "@kiln/core";
import { DEFAULT_REGISTRY_TIMEOUT_MS, REGISTRY_TIMEOUT_ENV, registryTimeoutFromEnv } from "@kiln/core/plugin";

export interface EcrDeadlineSetting {
  ms: number;
  source: "option" | "env" | "default";
}

export function resolveDeadline(option: number | undefined, env: NodeJS.ProcessEnv = process.env): EcrDeadlineSetting {
  if (option !== undefined) return { ms: option, source: "option" };
  const fromEnv = registryTimeoutFromEnv(env);
  return fromEnv !== undefined ? { ms: fromEnv, source: "env" } : { ms: DEFAULT_REGISTRY_TIMEOUT_MS, source: "default" };
}

export interface RequestDeadline {
  /** Aborts on the caller's signal or at the deadline, whichever comes first. */
  signal: AbortSignal;
  /** True when the deadline (not the caller) ended the request. */
  expired(): boolean;
}

export function requestDeadline(caller: AbortSignal | undefined, setting: EcrDeadlineSetting): RequestDeadline {
  const timeout = AbortSignal.timeout(setting.ms);
  return {
    signal: caller ? AbortSignal.any([caller, timeout]) : timeout,
    expired: () => timeout.aborted && !caller?.aborted,
  };
}

export function ecrTimeoutError(what: string, setting: EcrDeadlineSetting, details: Record<string, unknown>, cause?: unknown): RegistryTimeoutError {
  const where =
    setting.source === "option"
      ? `the EcrImageChecker option timeoutMs (now ${setting.ms})`
      : `${REGISTRY_TIMEOUT_ENV} (now ${setting.ms}${setting.source === "default" ? ", the default" : ""}) or the EcrImageChecker option timeoutMs`;
  return new RegistryTimeoutError(`${what} did not finish within the ${setting.ms / 1000} s request deadline`, {
    hint: `The ECR endpoint (or the network path to it) is too slow or stalled; nothing was concluded about the image. Check the endpoint and network, or for a slow link raise ${where}.`,
    cause,
    details: { ...details, timeoutMs: setting.ms },
  });
}
