/**
 * `kiln plan <spec>` — per image: uri, tag, exists (true/false/unknown), action (skip/build/promote:
 * absent, but a `promoteFrom` registry holds it — `source` names where it would be copied from).
 * The answer must be the one `kiln build` would act on, so every image is asked of the selected
 * builder's checkers (or the chosen checker chain), in order, through an engine dry run (nothing is
 * built). Only when no builder is installed at all does plan ask the registry directly, over one
 * client whose by-digest reads are asked once per run (planClient.ts). Checks run concurrently
 * (bounded); the registry checkers share core's default RegistryClient, so tokens and keep-alive
 * connections are reused.
 * Exit 0 when every answer is known, 2 when some could not be determined.
 */
import { resolve } from "node:path";
import { findProjectDir, loadConfig } from "../../config.js";
import { build } from "../../engine.js";
import type { BuildEvent } from "../../events.js";
import type { Image } from "../../image.js";
import { serializeError } from "../../redact.js";
import { type KilnError, UnknownBuilderError } from "../../errors.js";
import { checkImage, defaultRegistryClient } from "../../registry/check.js";
import { mapBounded } from "../../boundedConcurrency.js";
import { planRegistryClient } from "../planClient.js";
import { activateCredentialProviders } from "../../discovery.js";
import { getDiscovery, selectBuilder } from "../../selection.js";
import { parse, parseCheckerFlag, parsePlatforms, UsageError } from "../args.js";
import { buildTargetOf } from "../buildTarget.js";
import { parsePromoteFromFlag } from "./promote.js";
import { PromotionStep } from "../../promotion/engineStep.js";
import { selectPromoteFrom } from "../../promotion/select.js";
import type { CommandContext } from "../run.js";
import { loadSpec } from "../spec.js";

export interface PlanRow {
  export: string;
  uri: string;
  tag: string;
  platforms: string[];
  exists: boolean | "unknown";
  action: "skip" | "build" | "promote";
  /** For action "promote": the reference it would be copied from. */
  source?: string;
  /** Requested platforms missing from an existing image. */
  missing?: string[];
  /** Why exists is "unknown". */
  reason?: string;
  /** Who answered: the builder's name, or "registry" when no builder is installed. */
  checkedBy: string;
  /** The builder that would build it (chosen per image when none is configured: the first that can). */
  builder?: string;
}

export async function run(args: string[], context: CommandContext): Promise<number> {
  const { values, positionals } = parse(
    "plan",
    args,
    {
      registry: { type: "string" },
      platform: { type: "string" },
      concurrency: { type: "string" },
      json: { type: "boolean" },
      project: { type: "string" },
      builder: { type: "string" },
      checker: { type: "string" },
      "promote-from": { type: "string" },
    },
    { min: 1, max: 1, names: "one spec file" },
  );
  const promoteFrom = parsePromoteFromFlag(values["promote-from"]);
  const platforms = parsePlatforms(values.platform);
  const checkers = parseCheckerFlag(values.checker);
  const concurrency = values.concurrency === undefined ? 8 : Number(values.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) {
    throw new UsageError(`Invalid --concurrency ${JSON.stringify(values.concurrency)}: expected an integer from 1 to 64`, { hint: "E.g. --concurrency 8." });
  }
  const projectDir = values.project ? resolve(values.project) : findProjectDir();
  const config = loadConfig(projectDir);
  const specs = await loadSpec(positionals[0]!);
  const builderName = await builderForPlan(values.builder, projectDir, config);
  if (builderName === undefined) {
    // No builder (whose engine run would do it): plugins' credential providers still answer for their registries.
    for (const problem of await activateCredentialProviders(getDiscovery(projectDir))) {
      context.stderr.write(`kiln: warning: ${problem.message}\n`);
    }
  }

  // Builder-less: one client for the run, asking each immutable (by-digest) manifest once.
  const client = builderName === undefined ? planRegistryClient(defaultRegistryClient()) : undefined;
  // `signal`: this image's own (aborted with the CLI's), so the CLI's signal carries no listener per image.
  const planOne = async ({ exportName, image: declared }: { exportName: string; image: Image }, signal: AbortSignal): Promise<PlanRow> => {
    // As `kiln build` would build it (../buildTarget.ts): --registry, else the default registry, and
    // --platform down the whole chain; with pinBase on, the tag has the base's digest in it.
    const image = await buildTargetOf(declared, { registry: values.registry, platforms, projectDir, signal });
    const row: PlanRow = {
      export: exportName,
      uri: image.uri,
      tag: image.tag,
      platforms: [...image.platform],
      exists: "unknown",
      action: "build",
      checkedBy: builderName ?? "registry",
    };
    if (!image.needsBuild) row.action = "skip";
    if (builderName === undefined) {
      if (!image.registry && image.needsBuild) {
        row.reason = "no image builder is installed to check a local image";
      } else {
        try {
          const answer = await checkImage(image.uri, { platforms: image.platform, ...(client ? { client } : {}) });
          row.exists = answer.present;
          if (answer.exists && !answer.present) row.missing = answer.missing;
          // As the engine would: an absent image a promoteFrom registry holds is copied, not built.
          if (!answer.present && image.needsBuild && image.tag !== "latest") {
            const sources = selectPromoteFrom(promoteFrom, config).sources;
            const candidate = await new PromotionStep({
              image,
              sources,
              strict: false,
              signal,
              onEvent: () => {},
              ...(client ? { client } : {}),
            }).findCandidate();
            if (candidate) row.source = candidate.source;
          }
        } catch (error) {
          row.reason = serializeError(error).message;
        }
      }
    } else {
      const events: BuildEvent[] = [];
      try {
        // With no --builder the engine picks per image (the first installed builder that can build it).
        const result = await build(image, {
          builder: values.builder,
          ...(checkers ? { checkers } : {}),
          ...(promoteFrom ? { promoteFrom } : {}),
          dryRun: true,
          projectDir,
          signal,
          onEvent: (e) => events.push(e),
        });
        if (result.builder !== undefined) row.builder = row.checkedBy = result.builder;
        const checks = events.filter((e): e is Extract<BuildEvent, { type: "check.result" }> => e.type === "check.result");
        if (result.outcome === "would-promote") row.source = result.promotedFrom;
        if (result.outcome === "found") row.exists = true;
        // One checker erroring means "could not tell" even if another said absent (e.g. the local
        // daemon's checker answers absent for every registry image): never a false "exists: false".
        else if (checks.some((c) => c.result === "error"))
          row.reason = checks
            .filter((c) => c.result === "error")
            .map((c) => `${c.checker}: ${c.error?.message}`)
            .join("; ");
        else if (checks.length > 0) row.exists = false;
        // The shared check cache answered "absent" (checked by another host seconds ago).
        else if (events.some((e) => e.type === "cache.result" && e.result === "absent")) row.exists = false;
        else if (image.tag !== "latest") row.reason = "the builder has no checkers";
      } catch (error) {
        if (signal.aborted) throw error;
        row.reason = serializeError(error).message;
      }
    }
    if (image.tag === "latest") row.action = "build";
    else if (row.exists === true || !image.needsBuild) row.action = "skip";
    else if (row.source !== undefined) row.action = "promote";
    return row;
  };

  const rows = await mapBounded(specs, concurrency, (spec, _index, signal) => planOne(spec, signal), { signal: context.signal });
  if (values.json) {
    for (const row of rows) context.stdout.write(`${JSON.stringify(row)}\n`);
  } else {
    const uriWidth = Math.max(3, ...rows.map((r) => r.uri.length));
    context.stdout.write(`${"IMAGE".padEnd(uriWidth)}  EXISTS   ACTION   BUILDER\n`);
    for (const row of rows) {
      context.stdout.write(
        `${row.uri.padEnd(uriWidth)}  ${String(row.exists).padEnd(7)}  ${row.action.padEnd(7)}  ${row.builder ?? "-"}${row.source ? ` (from ${row.source})` : ""}${row.missing ? ` (missing ${row.missing.join(", ")})` : ""}${row.reason ? ` (${row.reason})` : ""}\n`,
      );
    }
  }
  return rows.some((r) => r.reason !== undefined) ? 2 : 0;
}

/** The builder `kiln build` would use; undefined when none is installed (plan then asks registries). */
async function builderForPlan(requested: string | undefined, projectDir: string, config: ReturnType<typeof loadConfig>): Promise<string | undefined> {
  try {
    return (await selectBuilder(requested, projectDir, config)).name;
  } catch (error) {
    const noneInstalled = UnknownBuilderError.isInstance(error) && ((error as KilnError).details?.available as unknown[] | undefined)?.length === 0;
    if (requested === undefined && noneInstalled) return undefined;
    throw error;
  }
}
