/**
 * `kiln explain <spec>` — the hash inputs behind each tag. With pinBase on (or --pin-base) the base is
 * resolved to its digest first, as `kiln build` does, so the tag shown is the one a build would push.
 * `--diff`: what changed since the last recorded tag of the same image name (`.kiln/explain`, written
 * by every build; explainRecord.ts / explainDiff.ts); `--against <ref>`: the same, against the record
 * attached to that image in its registry (explainArtifact.ts) — e.g. in CI, where .kiln is not kept.
 */
import { resolve } from "node:path";
import { diffExplainRecords, formatExplainDiff, type ExplainDiff } from "../../explainDiff.js";
import { readAttachedExplainRecord } from "../../explainArtifact.js";
import { compactRecord, explainDirectory, latestExplainRecord, type ExplainRecord } from "../../explainRecord.js";
import type { TagExplanation } from "../../hash.js";
import { resolveProjectDir } from "../../selection.js";
import { chainOf, describeChain } from "../../graph.js";
import { parse } from "../args.js";
import { buildTargetOf } from "../buildTarget.js";
import type { CommandContext } from "../run.js";
import { loadSpec } from "../spec.js";

export async function run(args: string[], context: CommandContext): Promise<number> {
  const { values, positionals } = parse(
    "explain",
    args,
    {
      json: { type: "boolean" },
      diff: { type: "boolean" },
      against: { type: "string" },
      "pin-base": { type: "boolean" },
      registry: { type: "string" },
      project: { type: "string" },
    },
    { min: 1, max: 1, names: "one spec file" },
  );
  const projectDir = resolveProjectDir(values.project ? resolve(values.project) : undefined);
  const specs = await loadSpec(positionals[0]!);
  for (const { exportName, image: declared } of specs) {
    // As `kiln build` would build it: default registry down the chain, bases pinned (../buildTarget.ts).
    const image = await buildTargetOf(declared, {
      registry: values.registry,
      projectDir,
      signal: context.signal,
      ...(values["pin-base"] ? { pinBase: true } : {}),
    });
    const explanation = image.explain();
    const diff =
      values.against !== undefined
        ? await diffWithAttachedRecord(values.against, image, explanation, context.signal)
        : values.diff
          ? diffWithLastRecord(projectDir, image, explanation)
          : undefined;
    if (values.json) {
      // An image built on Kiln images (graph.ts): each of them, top first, with its tag.
      const chain = image.baseImage
        ? {
            chain: chainOf(image)
              .slice(1)
              .map((base) => ({ uri: base.uri, tag: base.tag })),
          }
        : {};
      const since =
        diff === undefined
          ? {}
          : { previous: diff.previous ? { tag: diff.previous.tag, at: diff.previous.at, uri: diff.previous.uri } : null, diff: diff.diff ?? null };
      context.stdout.write(`${JSON.stringify({ export: exportName, uri: image.uri, tag: image.tag, explanation, ...chain, ...since })}\n`);
      continue;
    }
    const chain = image.baseImage ? `chain ${describeChain(image)}\n` : "";
    if (diff !== undefined) {
      context.stdout.write(`# ${exportName}: ${image.uri}\n${diff.lines.join("\n")}\n`);
      continue;
    }
    context.stdout.write(`# ${exportName}: ${image.uri}\n${chain}${formatExplanation(explanation)}\n`);
  }
  return 0;
}

/** The image's inputs against the record attached to `reference` in its registry (explainArtifact.ts). */
async function diffWithAttachedRecord(
  reference: string,
  image: Parameters<typeof compactRecord>[0],
  explanation: TagExplanation,
  signal: AbortSignal,
): Promise<{ previous?: ExplainRecord; diff?: ExplainDiff; lines: string[] }> {
  const previous = await readAttachedExplainRecord(reference, { signal });
  if (previous === null) return { lines: [`${reference} has no explain record in its registry (or is not there): nothing to compare with`] };
  const diff = diffExplainRecords(previous, compactRecord(image, explanation, { outcome: "explain" }));
  if (previous.tag === explanation.tag) return { previous, diff, lines: [`tag ${explanation.tag} is the tag of ${reference}: nothing changed`] };
  return { previous, diff, lines: [`tag ${explanation.tag}, ${reference} has ${previous.tag}`, ...formatExplainDiff(diff)] };
}

/** The image's inputs against the newest record of its name: the diff, or why there is none. */
function diffWithLastRecord(
  projectDir: string,
  image: Parameters<typeof compactRecord>[0],
  explanation: TagExplanation,
): { previous?: ExplainRecord; diff?: ExplainDiff; lines: string[] } {
  const previous = latestExplainRecord(projectDir, image.name);
  if (previous === undefined) {
    return {
      lines: [
        `no recorded tag of ${image.name} yet: nothing to compare with (kiln build records every tag it builds or finds in ${explainDirectory(projectDir)})`,
      ],
    };
  }
  const diff = diffExplainRecords(previous, compactRecord(image, explanation, { outcome: "explain" }));
  if (previous.tag === explanation.tag)
    return { previous, diff, lines: [`tag ${explanation.tag} is the last recorded tag of ${image.name} (recorded ${previous.at}): nothing changed`] };
  return { previous, diff, lines: [`tag ${explanation.tag}, last recorded ${previous.tag}`, ...formatExplainDiff(diff)] };
}

/** Human form of a TagExplanation: the tag, the digest it is cut from, then one line per input. */
function formatExplanation(explanation: TagExplanation): string {
  const width = Math.min(48, Math.max(0, ...explanation.inputs.map((i) => i.label.length)));
  const lines = [`tag ${explanation.tag} (sha256 ${explanation.digest})`];
  for (const input of explanation.inputs) lines.push(`  ${input.label.padEnd(width)}  ${input.value}`);
  return lines.join("\n");
}
