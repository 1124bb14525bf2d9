/**
 * The checker chain a user chooses (`build({ checkers })`, `--checker`, `init({ imageCheckers })`,
 * `KILN_IMAGE_CHECKERS`, `imageCheckers` in the config file): its shape and how it is read. Kept
 * apart from checkerSelection.ts so selection.ts can validate `init()` without an import cycle.
 */
import type { ImageCheckerLike } from "./builder.js";
import { ConfigError, describeValue } from "./errors.js";

/** A checker's registered name (a plugin's `kiln.imageCheckers` key) or a checker itself. */
export type CheckerChoice = string | ImageCheckerLike;

/** Throws a ConfigError unless `value` is undefined or a list of names / checkers. */
export function validateCheckerChoices(where: string, value: unknown): void {
  if (value === undefined) return;
  const isChecker = (v: unknown) =>
    (typeof v === "object" || typeof v === "function") &&
    v !== null &&
    (typeof (v as { imageExists?: unknown }).imageExists === "function" ||
      typeof (v as { prototype?: { imageExists?: unknown } }).prototype?.imageExists === "function");
  const bad = Array.isArray(value) ? value.find((v) => !(typeof v === "string" && v.length > 0) && !isChecker(v)) : value;
  if (!Array.isArray(value) || bad !== undefined) {
    throw new ConfigError(
      `Invalid ${where} ${describeValue(Array.isArray(value) ? bad : value)}: expected a list of checker names (or checkers), in the order to ask them`,
      {
        hint: 'E.g. ["docker-local", "registry"]; `kiln plugins` lists the installed checkers.',
      },
    );
  }
}

/** `KILN_IMAGE_CHECKERS` / `--checker`: "a,b" → ["a", "b"]; undefined when unset or empty. */
export function parseCheckerList(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  const names = value
    .split(",")
    .map((n) => n.trim())
    .filter(Boolean);
  return names.length > 0 ? names : undefined;
}
