/**
 * `kiln dockerfile <spec>` — the rendered Dockerfile of each image, as `kiln build` would build it
 * (../buildTarget.ts): the default registry (--registry first) applied down the chain, so the FROM of
 * an image built on a Kiln image names that base where the build puts it, and with pinBase on, the
 * base and the uv image by the digests a build would use. (A build then reads a Kiln base by the
 * digest it was just built or found at: `FROM <that reference>@sha256:…`, known only once it is.)
 */
import { resolve } from "node:path";
import { renderDockerfile } from "../../dockerfile.js";
import { parse } from "../args.js";
import { buildTargetOf } from "../buildTarget.js";
import type { CommandContext } from "../run.js";
import { loadSpec } from "../spec.js";

export async function run(args: string[], context: CommandContext): Promise<number> {
  const { values, positionals } = parse(
    "dockerfile",
    args,
    { "no-buildkit": { type: "boolean" }, registry: { type: "string" }, "pin-base": { type: "boolean" }, project: { type: "string" } },
    { min: 1, max: 1, names: "one spec file" },
  );
  const projectDir = values.project ? resolve(values.project) : undefined;
  const specs = await loadSpec(positionals[0]!);
  for (const { exportName, image: declared } of specs) {
    const image = await buildTargetOf(declared, {
      registry: values.registry,
      ...(projectDir ? { projectDir } : {}),
      ...(values["pin-base"] ? { pinBase: true } : {}),
      signal: context.signal,
    });
    if (specs.length > 1) context.stdout.write(`# ---- ${exportName}: ${image.uri}\n`);
    context.stdout.write(renderDockerfile(image, { buildkit: !values["no-buildkit"] }));
    context.stdout.write("\n");
  }
  return 0;
}
