/** Argument parsing on node:util parseArgs, with bad usage turned into a UsageError (exit 2). */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError, describeValue } from "../errors.js";
import { ARCHITECTURES, type Architecture } from "../layers.js";

// Defined with the other typed errors, so `UsageError.isInstance` checks the code like theirs.
export { UsageError };

export function parse<T extends NonNullable<ParseArgsConfig["options"]>>(
  command: string,
  args: string[],
  options: T,
  positionals: { min: number; max: number; names: string },
) {
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(`kiln ${command}: ${(error as Error).message}`, { hint: `Run \`kiln ${command} --help\`.` });
  }
  if (parsed.positionals.length < positionals.min || parsed.positionals.length > positionals.max) {
    throw new UsageError(`kiln ${command} expects ${positionals.names}, got ${parsed.positionals.length} argument(s)`, {
      hint: `Run \`kiln ${command} --help\`.`,
    });
  }
  return parsed;
}

/** `--checker a,b` → ["a", "b"] (the checker chain, in order); undefined when not given. */
export function parseCheckerFlag(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  const names = value
    .split(",")
    .map((n) => n.trim())
    .filter(Boolean);
  if (names.length === 0)
    throw new UsageError("--checker needs at least one checker name", {
      hint: "Use e.g. --checker docker-local,registry; `kiln plugins` lists the installed checkers.",
    });
  return names;
}

/** `linux/amd64,linux/arm64` → validated Architecture[]. */
export function parsePlatforms(value: string | undefined): Architecture[] | undefined {
  if (value === undefined) return undefined;
  const list = value
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean);
  if (list.length === 0) throw new UsageError("--platform needs at least one platform", { hint: `Use e.g. --platform ${ARCHITECTURES.join(",")}.` });
  for (const platform of list) {
    if (!(ARCHITECTURES as readonly string[]).includes(platform)) {
      throw new UsageError(`Invalid --platform ${describeValue(platform)}: expected one of ${ARCHITECTURES.join(", ")}`, {
        hint: `Use e.g. --platform ${ARCHITECTURES.join(",")}.`,
      });
    }
  }
  return [...new Set(list)] as Architecture[];
}
