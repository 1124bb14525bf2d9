/**
 * The one timestamp of a reproducible build: `SOURCE_DATE_EPOCH` (seconds, reproducible-builds.org)
 * when set, else 0 (1970-01-01T00:00:00Z). It is every tar entry's mtime and the config's `created`.
 */
import { ValidationError } from "@kiln/core";

export const DEFAULT_EPOCH_SECONDS = 0;

export function buildEpochSeconds(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.SOURCE_DATE_EPOCH;
  if (raw === undefined || raw.trim() === "") return DEFAULT_EPOCH_SECONDS;
  if (!/^\d{1,12}$/.test(raw.trim())) {
    throw new ValidationError("SOURCE_DATE_EPOCH", raw, "must be a whole number of seconds since 1970", {
      hint: "Set it to e.g. $(git log -1 --format=%ct), or unset it.",
    });
  }
  return Number(raw.trim());
}

export function epochIso(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace(/\.000Z$/, "Z");
}
