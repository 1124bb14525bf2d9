/**
 * `kiln promote <ref> <target-registry>` — copies an image from one registry to another by hand, as
 * `build()` does with `promoteFrom`: blobs mounted when both are on the same registry host, else
 * streamed; children before the index; digests verified; the target tag written last.
 *
 * The target is `<target-registry>/<name>:<tag>`: `name` is the last path segment of <ref>'s
 * repository (`ghcr.io/acme-staging/team/api:1f0c` → `api`) unless --name is given, `tag` is <ref>'s
 * tag unless --tag is given. Exit 0 promoted (or already there), 1 failed or the source lacks the
 * image, 2 bad usage, 130 interrupted.
 */
import { findProjectDir } from "../../config.js";
import { activateCredentialProviders } from "../../discovery.js";
import { describeValue, ValidationError } from "../../errors.js";
import { promoteImage } from "../../promotion/copy.js";
import { validatePromoteFrom } from "../../promotion/sources.js";
import { parseReference } from "../../reference.js";
import { checkImage, defaultRegistryClient } from "../../registry/check.js";
import { describeRef } from "../../registry/client.js";
import { getDiscovery } from "../../selection.js";
import { validateRegistry, validateRepositoryName } from "../../validate.js";
import { parse, parsePlatforms, UsageError } from "../args.js";
import { createRenderer } from "../render.js";
import type { CommandContext } from "../run.js";

/** `--promote-from a,b` → validated registries (undefined when not given; "" means none). */
export function parsePromoteFromFlag(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  try {
    return validatePromoteFrom(
      "--promote-from",
      value
        .split(",")
        .map((entry) => entry.trim())
        .filter(Boolean),
    );
  } catch (error) {
    if (!ValidationError.isInstance(error)) throw error;
    throw new UsageError(error.message, { hint: "Use e.g. --promote-from ghcr.io/acme-staging,localhost:5000/cache." });
  }
}

export async function run(args: string[], context: CommandContext): Promise<number> {
  const { values, positionals } = parse(
    "promote",
    args,
    {
      platform: { type: "string" },
      name: { type: "string" },
      tag: { type: "string" },
      json: { type: "boolean" },
      project: { type: "string" },
    },
    { min: 2, max: 2, names: "an image reference and a target registry" },
  );
  const platforms = parsePlatforms(values.platform) ?? [];
  const source = parseReference(positionals[0]!);
  const targetRegistry = usage(() => validateRegistry("target registry", positionals[1]), "E.g. kiln promote ghcr.io/acme-staging/api:1f0c… ghcr.io/acme");
  const name = usage(() => validateRepositoryName("--name", values.name ?? source.repository.split("/").at(-1)), "E.g. --name api or --name team/api.");
  const tag = values.tag ?? source.tag;
  if (!tag || !/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(tag)) {
    throw new UsageError(tag ? `Invalid --tag ${describeValue(tag)}` : `${positionals[0]} has no tag to give the target`, {
      hint: "Pass --tag <tag> (a reference by digest has none).",
    });
  }
  const target = `${targetRegistry}/${name}:${tag}`;

  // Plugins' credential providers (e.g. @kiln/ecr) answer for their registries, as in `kiln build`.
  for (const problem of await activateCredentialProviders(getDiscovery(values.project ?? findProjectDir()))) {
    context.stderr.write(`kiln: warning: ${problem.message}\n`);
  }
  const renderer = createRenderer(values.json ? "json" : context.interactive ? "tty" : "plain", context.stderr);
  const client = defaultRegistryClient();
  try {
    const there = await checkImage(target, { platforms, client, signal: context.signal, onEvent: renderer.onEvent });
    const wanted = await client.headManifest(source, { signal: context.signal });
    if (there.present && wanted && there.digest === wanted.digest) {
      writeResult(context, values.json, { status: "present", source: describeRef(source), target: there.uri, digest: there.digest });
      return 0;
    }
    const started = Date.now();
    const sameHost = parseReference(target).registry === source.registry;
    renderer.onEvent({
      type: "promote.start",
      time: Date.now(),
      image: target,
      source: describeRef(source),
      target,
      platforms,
      mode: sameHost ? "mount" : "stream",
    });
    const promoted = await promoteImage(client, source, target, { platforms, signal: context.signal, onEvent: renderer.onEvent, image: target });
    renderer.onEvent({
      type: "promote.done",
      time: Date.now(),
      image: target,
      source: promoted.source,
      target: promoted.target,
      digest: promoted.digest,
      durationMs: Date.now() - started,
      mounted: promoted.blobs.mounted,
      copied: promoted.blobs.copied,
      existing: promoted.blobs.existing,
      bytesCopied: promoted.bytesCopied,
    });
    renderer.close();
    writeResult(context, values.json, { status: "promoted", ...promoted });
    return 0;
  } finally {
    renderer.close();
  }
}

function writeResult(
  context: CommandContext,
  json: boolean | undefined,
  result: { status: string; target: string; digest?: string } & Record<string, unknown>,
): void {
  context.stdout.write(json ? `${JSON.stringify(result)}\n` : `${result.target}${result.digest ? `@${result.digest}` : ""}\n`);
}

/** A validation failure of a command-line value is bad usage (exit 2). */
function usage<T>(read: () => T, hint: string): T {
  try {
    return read();
  } catch (error) {
    if (!ValidationError.isInstance(error)) throw error;
    throw new UsageError(error.message, { hint });
  }
}
