/** `kiln build <spec>[#export]` — check, then build and push what is missing; URIs on stdout. */
import { resolve } from "node:path";
import { build } from "../../engine.js";
import { parse, parseCheckerFlag, parsePlatforms } from "../args.js";
import { createRenderer } from "../render.js";
import { readSecretFlags } from "../secrets.js";
import type { CommandContext } from "../run.js";
import { printError, exitCodeFor } from "../run.js";
import { loadSpec } from "../spec.js";

export async function run(args: string[], context: CommandContext): Promise<number> {
  const { values, positionals } = parse("build", args, {
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
  }, { min: 1, max: 1, names: "one spec file" });
  const platforms = parsePlatforms(values.platform);
  const checkers = parseCheckerFlag(values.checker);
  // Read before loading the spec: a typo'd flag or unreadable file fails fast, and values are read once.
  const secrets = readSecretFlags(values.secret);
  const projectDir = values.project ? resolve(values.project) : undefined;
  const specs = await loadSpec(positionals[0]!);
  const renderer = createRenderer(values.json ? "json" : context.interactive ? "tty" : "plain", context.stderr);
  let exitCode = 0;
  try {
    for (const { image: declared } of specs) {
      let image = declared;
      // --registry is the default registry: for images declared without one, never replacing a spec's own.
      const registry = values.registry && !image.registry ? values.registry : undefined;
      if (image.needsBuild && (registry || platforms)) {
        image = image.clone({ ...(registry ? { registry } : {}), ...(platforms ? { platform: platforms } : {}) });
      }
      try {
        const result = await build(image, {
          builder: values.builder,
          ...(checkers ? { checkers } : {}),
          force: values.force,
          dryRun: values["dry-run"],
          strict: values.strict,
          signal: context.signal,
          onEvent: renderer.onEvent,
          projectDir,
          ...(secrets ? { secrets } : {}),
        });
        if (result.uri) context.stdout.write(`${result.uri}\n`);
      } catch (error) {
        renderer.close();
        exitCode = exitCodeFor(error, context.signal);
        printError(error, context, exitCode);
        return exitCode;
      }
    }
  } finally {
    renderer.close();
  }
  return exitCode;
}
