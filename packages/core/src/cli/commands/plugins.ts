/** `kiln plugins` — what the project's dependencies declare, and what is broken. */
import { resolve } from "node:path";
import { findProjectDir, loadConfig } from "../../config.js";
import { discoverPlugins, type DiscoveredProvider } from "../../discovery.js";
import { verifyDiscovery } from "../../pluginVerify.js";
import { parse } from "../args.js";
import type { CommandContext } from "../run.js";

export async function run(args: string[], context: CommandContext): Promise<number> {
  const { values } = parse("plugins", args, { json: { type: "boolean" }, project: { type: "string" } }, { min: 0, max: 0, names: "no arguments" });
  const projectDir = values.project ? resolve(values.project) : findProjectDir();
  const discovery = discoverPlugins(projectDir);
  const config = loadConfig(projectDir);
  // Each entry imported and its shape checked (build stays lazy: it imports only what it selects).
  const broken = await verifyDiscovery(discovery);
  const problems = [...discovery.problems, ...broken];
  const isBroken = (p: DiscoveredProvider) => broken.some((b) => b.kind === p.kind && b.name === p.name);
  const exitCode = problems.length > 0 ? 1 : 0;
  const summary = (p: DiscoveredProvider) => ({
    name: p.name,
    package: p.packageName,
    version: p.packageVersion,
    entry: p.entry,
    ...(isBroken(p) ? { broken: true } : {}),
  });
  if (values.json) {
    context.stdout.write(
      `${JSON.stringify(
        {
          projectDir,
          config: {
            imageBuilder: config.imageBuilder,
            imageRegistry: config.imageRegistry,
            strict: config.strict,
            lockProvider: config.lockProvider,
            checkCache: config.checkCache,
            imageCheckers: config.imageCheckers,
          },
          imageBuilders: discovery.imageBuilders.map(summary),
          imageCheckers: discovery.imageCheckers.map(summary),
          credentialProviders: discovery.credentialProviders.map(summary),
          lockProviders: discovery.lockProviders.map(summary),
          checkCaches: discovery.checkCaches.map(summary),
          missing: discovery.missing,
          problems: problems.map((p) => ({ package: p.packageName, name: p.name, kind: p.kind, message: p.error.message, hint: p.error.hint })),
        },
        null,
        2,
      )}\n`,
    );
    return exitCode;
  }
  const out: string[] = [`Project: ${projectDir}`];
  if (config.imageBuilder) out.push(`Configured builder: ${config.imageBuilder} (${config.sources.imageBuilder})`);
  if (config.imageRegistry) out.push(`Configured registry: ${config.imageRegistry} (${config.sources.imageRegistry})`);
  if (config.imageCheckers) out.push(`Configured checkers: ${config.imageCheckers.join(", ") || "(none)"} (${config.sources.imageCheckers})`);
  if (config.lockProvider) out.push(`Configured lock provider: ${config.lockProvider} (${config.sources.lockProvider})`);
  if (config.checkCache) out.push(`Configured check cache: ${config.checkCache} (${config.sources.checkCache})`);
  const section = (title: string, list: DiscoveredProvider[]) => {
    out.push("", `${title}:`);
    if (list.length === 0) out.push("  (none)");
    const width = Math.max(0, ...list.map((p) => p.name.length));
    for (const p of list)
      out.push(
        `  ${p.name.padEnd(width)}  ${p.packageName}${p.packageVersion ? `@${p.packageVersion}` : ""}  ${p.entry}${isBroken(p) ? "  (broken, see Problems)" : ""}`,
      );
  };
  section("Image builders", discovery.imageBuilders);
  section("Image checkers", discovery.imageCheckers);
  section("Credential providers", discovery.credentialProviders);
  section("Lock providers (built in: file)", discovery.lockProviders);
  section("Check caches (built in: none)", discovery.checkCaches);
  if (discovery.missing.length) out.push("", `Listed in package.json but not installed: ${discovery.missing.join(", ")}`);
  if (problems.length) {
    out.push("", "Problems:");
    for (const p of problems) out.push(`  ${p.error.message}${p.error.hint ? `\n    hint: ${p.error.hint}` : ""}`);
  }
  context.stdout.write(`${out.join("\n")}\n`);
  return exitCode;
}
