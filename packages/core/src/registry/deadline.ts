/**
 * The total deadline of a registry request. Every exchange with a registry or its token service —
 * connect, headers and the whole body — must finish within `timeouts.totalMs` (default 30 s;
 * KILN_REGISTRY_TIMEOUT_MS sets it for a process, the client option wins over both). A request that
 * passes its deadline is abandoned (socket closed) and not tried again: a registry that dripped one
 * answer past the deadline would drip the next one too, and four such attempts once kept a check
 * busy for two minutes. A retry after another failure (a reset, a 503, a stall) gets its own full
 * deadline, but none starts once the call has spent its deadline — so one client call ends within
 * twice the deadline (a check against a stalling registry answers within 60 s by default).
 */
import { ConfigError } from "../errors.js";

export const REGISTRY_TIMEOUT_ENV = "KILN_REGISTRY_TIMEOUT_MS";
export const DEFAULT_REGISTRY_TIMEOUT_MS = 30_000;

/** Where a client's deadline came from, so the timeout hint names the setting that applies. */
export type DeadlineSource = "option" | "env" | "default";

/** `KILN_REGISTRY_TIMEOUT_MS` as milliseconds; undefined when unset or empty; a ConfigError when unreadable. */
export function registryTimeoutFromEnv(env: NodeJS.ProcessEnv): number | undefined {
  const raw = env[REGISTRY_TIMEOUT_ENV]?.trim();
  if (!raw) return undefined;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(value) || value < 1) {
    throw new ConfigError(`Invalid ${REGISTRY_TIMEOUT_ENV} ${JSON.stringify(raw.slice(0, 40))}: expected a whole number of milliseconds above 0`, {
      hint: `Set ${REGISTRY_TIMEOUT_ENV} to the longest time one registry request may take, e.g. ${REGISTRY_TIMEOUT_ENV}=30000 (the default), or unset it.`,
      details: { variable: REGISTRY_TIMEOUT_ENV },
    });
  }
  return value;
}

/** One client call's clock: may another attempt (after `delayMs` of back-off) still start? */
export class CallDeadline {
  private readonly startedAt = Date.now();

  constructor(readonly deadlineMs: number) {}

  elapsedMs(): number {
    return Date.now() - this.startedAt;
  }

  /** True when an attempt starting after `delayMs` would start before the call's deadline. */
  allowsAttemptAfter(delayMs: number): boolean {
    return this.elapsedMs() + delayMs < this.deadlineMs;
  }
}

/** The hint of a RegistryTimeoutError: what to raise, and where it was set. */
export function deadlineHint(registry: string, deadlineMs: number, source: DeadlineSource): string {
  const setting =
    source === "option"
      ? `the RegistryClient option timeouts.totalMs (now ${deadlineMs})`
      : `${REGISTRY_TIMEOUT_ENV} (now ${deadlineMs}${source === "default" ? ", the default" : ""}) or the RegistryClient option timeouts.totalMs`;
  return `${registry} (or a proxy in front of it) is too slow or stalled; nothing was concluded about the image. Check the registry's health, or for a slow link raise ${setting}.`;
}
