/**
 * `kiln check <image-ref>` — exit 0 present, 1 absent, 2 could not tell. The answer goes to stdout;
 * the registry's retries and rate limits to stderr as they happen (NDJSON events with --json).
 */
import { findProjectDir } from "../../config.js";
import { activateCredentialProviders } from "../../discovery.js";
import { InvalidReferenceError } from "../../errors.js";
import { getDiscovery } from "../../selection.js";
import { serializeError } from "../../redact.js";
import { checkImage } from "../../registry/check.js";
import { parse, parsePlatforms } from "../args.js";
import { createRenderer } from "../render.js";
import type { CommandContext } from "../run.js";

export async function run(args: string[], context: CommandContext): Promise<number> {
  const { values, positionals } = parse(
    "check",
    args,
    { platform: { type: "string" }, json: { type: "boolean" } },
    { min: 1, max: 1, names: "one image reference" },
  );
  const platforms = parsePlatforms(values.platform) ?? ["linux/amd64"];
  const ref = positionals[0]!;
  // Plugins' credential providers (e.g. @kiln/ecr) answer for their registries, as in `kiln build`.
  for (const problem of await activateCredentialProviders(getDiscovery(findProjectDir()))) {
    context.stderr.write(`kiln: warning: ${problem.message}\n`);
  }
  try {
    // Waits (a 429, a retried 503) are shown on stderr while they last: NDJSON events with --json.
    const waits = createRenderer(values.json ? "json" : "plain", context.stderr);
    const answer = await checkImage(ref, { platforms, onEvent: waits.onEvent });
    if (values.json) {
      context.stdout.write(`${JSON.stringify({ ref, status: answer.present ? "present" : "absent", ...answer })}\n`);
    } else if (answer.present) {
      context.stdout.write(`present ${answer.uri}${answer.digest ? `@${answer.digest}` : ""}\n`);
    } else if (answer.exists) {
      const broken = answer.brokenPlatforms.length
        ? `; its index lists ${answer.brokenPlatforms.join(", ")} but the registry no longer holds that manifest`
        : "";
      context.stdout.write(`absent ${answer.uri}: missing platform(s) ${answer.missing.join(", ")} (has ${answer.platforms.join(", ") || "none"})${broken}\n`);
    } else {
      context.stdout.write(`absent ${answer.uri}\n`);
    }
    return answer.present ? 0 : 1;
  } catch (error) {
    if (context.signal.aborted) throw error;
    if (InvalidReferenceError.isInstance(error)) throw error; // bad usage: exit 2 with the hint
    const serialized = serializeError(error);
    if (values.json) context.stdout.write(`${JSON.stringify({ ref, status: "unknown", error: serialized })}\n`);
    context.stderr.write(`kiln: could not tell whether ${ref} exists: ${serialized.message}\n${serialized.hint ? `hint: ${serialized.hint}\n` : ""}`);
    return 2;
  }
}
