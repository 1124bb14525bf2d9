/**
 * `kiln build <spec>[#export|#group]` — check, then build and push what is missing; URIs on stdout.
 *
 * Every selected image (and the Kiln images they are built on) goes through `buildAll`: concurrently
 * (--concurrency, default DEFAULT_BUILD_CONCURRENCY), bases before the images above them, each base
 * once; a failure does not stop the others (--fail-fast does). With more than one image, a summary
 * (image, action, time, digest) ends the run on stderr — NDJSON `summary` lines with --json.
 */
import { resolve } from "node:path";
import { BaseImageFailedError, buildAll, DEFAULT_BUILD_CONCURRENCY, type BuildAllResult } from "../../buildAll.js";
import { parse, parseCheckerFlag, parsePlatforms, UsageError } from "../args.js";
import { withTargetFlags } from "../buildTarget.js";
import { createRenderer } from "../render.js";
import { readSecretFlags } from "../secrets.js";
import type { CommandContext } from "../run.js";
import { printError, exitCodeFor } from "../run.js";
import { loadSpec } from "../spec.js";
import { formatSummary, summaryRecord } from "../summary.js";
import { parsePromoteFromFlag } from "./promote.js";

export async function run(args: string[], context: CommandContext): Promise<number> {
  const { values, positionals } = parse(
    "build",
    args,
    {
      builder: { type: "string" },
      checker: { type: "string" },
      registry: { type: "string" },
      platform: { type: "string" },
      force: { type: "boolean" },
      "dry-run": { type: "boolean" },
      strict: { type: "boolean" },
      json: { type: "boolean" },
      project: { type: "string" },
      secret: { type: "string", multiple: true },
      concurrency: { type: "string" },
      "fail-fast": { type: "boolean" },
      "pin-base": { type: "boolean" },
      "promote-from": { type: "string" },
    },
    { min: 1, max: 1, names: "one spec file" },
  );
  const promoteFrom = parsePromoteFromFlag(values["promote-from"]);
  const platforms = parsePlatforms(values.platform);
  const checkers = parseCheckerFlag(values.checker);
  const concurrency = parseConcurrency(values.concurrency);
  // Read before loading the spec: a typo'd flag or unreadable file fails fast, and values are read once.
  const secrets = readSecretFlags(values.secret);
  const projectDir = values.project ? resolve(values.project) : undefined;
  const specs = await loadSpec(positionals[0]!);
  const selected = specs.map(({ exportName, image }) => ({ name: exportName, image: withTargetFlags(image, values.registry, platforms) }));
  const renderer = createRenderer(values.json ? "json" : context.interactive ? "tty" : "plain", context.stderr);
  let results: BuildAllResult[];
  try {
    results = await buildAll(selected, {
      builder: values.builder,
      ...(checkers ? { checkers } : {}),
      force: values.force,
      dryRun: values["dry-run"],
      strict: values.strict,
      signal: context.signal,
      onEvent: renderer.onEvent,
      projectDir,
      ...(secrets ? { secrets } : {}),
      concurrency,
      failFast: values["fail-fast"] ?? false,
      ...(values["pin-base"] ? { pinBase: true } : {}),
      ...(promoteFrom ? { promoteFrom } : {}),
    });
  } finally {
    renderer.close();
  }

  const failures = results.filter((r) => r.action === "failed" || (r.action === "cancelled" && !context.signal.aborted));
  for (const failure of results.filter((r) => r.action === "failed")) {
    printError(failure.error, context, exitCodeFor(failure.error, context.signal));
  }
  // Interrupted: said once (the builds cancelled by --fail-fast are in the summary instead).
  const interrupted = context.signal.aborted ? results.find((r) => r.action === "cancelled") : undefined;
  if (interrupted) printError(interrupted.error, context, 130);
  for (const result of results) {
    if (!result.dependency && result.result?.uri) context.stdout.write(`${result.result.uri}\n`);
  }
  if (results.length > 1) {
    if (values.json) for (const result of results) context.stderr.write(`${JSON.stringify(summaryRecord(result))}\n`);
    else context.stderr.write(formatSummary(results));
  }
  if (context.signal.aborted) return 130;
  if (failures.length === 0) return 0;
  // One image asked for: the exit code of what failed (2 for bad usage such as a missing secret), as before.
  const cause = results.find((r) => r.action === "failed" && !BaseImageFailedError.isInstance(r.error));
  return results.filter((r) => !r.dependency).length === 1 && cause ? exitCodeFor(cause.error, context.signal) : 1;
}

function parseConcurrency(value: string | undefined): number {
  if (value === undefined) return DEFAULT_BUILD_CONCURRENCY;
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1) {
    throw new UsageError(`Invalid --concurrency ${JSON.stringify(value)}: expected a whole number of at least 1`, {
      hint: `e.g. --concurrency 8 (default ${DEFAULT_BUILD_CONCURRENCY})`,
    });
  }
  return n;
}
