/** `kiln explain <spec>` — the hash inputs behind each tag. */
import type { TagExplanation } from "../../hash.js";
import { parse } from "../args.js";
import type { CommandContext } from "../run.js";
import { loadSpec } from "../spec.js";

export async function run(args: string[], context: CommandContext): Promise<number> {
  const { values, positionals } = parse("explain", args, { json: { type: "boolean" } }, { min: 1, max: 1, names: "one spec file" });
  const specs = await loadSpec(positionals[0]!);
  for (const { exportName, image } of specs) {
    const explanation = image.explain();
    if (values.json) {
      context.stdout.write(`${JSON.stringify({ export: exportName, uri: image.uri, tag: image.tag, explanation })}\n`);
      continue;
    }
    context.stdout.write(`# ${exportName}: ${image.uri}\n${formatExplanation(explanation)}\n`);
  }
  return 0;
}

/** Human form of a TagExplanation: the tag, the digest it is cut from, then one line per input. */
function formatExplanation(explanation: TagExplanation): string {
  const width = Math.min(48, Math.max(0, ...explanation.inputs.map((i) => i.label.length)));
  const lines = [`tag ${explanation.tag} (sha256 ${explanation.digest})`];
  for (const input of explanation.inputs) lines.push(`  ${input.label.padEnd(width)}  ${input.value}`);
  return lines.join("\n");
}
