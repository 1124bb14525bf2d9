/** `kiln dockerfile <spec>` — the rendered Dockerfile of each image. */
import { renderDockerfile } from "../../dockerfile.js";
import { pinBaseImage } from "../../pinBase.js";
import { parse } from "../args.js";
import type { CommandContext } from "../run.js";
import { loadSpec } from "../spec.js";

export async function run(args: string[], context: CommandContext): Promise<number> {
  const { values, positionals } = parse("dockerfile", args, { "no-buildkit": { type: "boolean" } }, { min: 1, max: 1, names: "one spec file" });
  const specs = await loadSpec(positionals[0]!);
  for (const { exportName, image: declared } of specs) {
    // With pinBase on, FROM names the base by the digest a build would use (pinBase.ts).
    const image = await pinBaseImage(declared, { signal: context.signal });
    if (specs.length > 1) context.stdout.write(`# ---- ${exportName}: ${image.uri}\n`);
    context.stdout.write(renderDockerfile(image, { buildkit: !values["no-buildkit"] }));
    context.stdout.write("\n");
  }
  return 0;
}
