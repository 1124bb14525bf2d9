/**
 * docker-modem logs every request's options under `DEBUG=modem` (or `DEBUG=*`): the X-Registry-Auth
 * header (registry credentials) among them. Kiln therefore always excludes the `modem` namespace
 * (the debug module supports negation: `DEBUG=*,-modem`); every other namespace stays as asked.
 */
import { createRequire } from "node:module";

const EXCLUDE_MODEM = "-modem";

/** `namespaces` with `modem` excluded (unchanged when DEBUG is unset or excludes it already). */
export function withoutModemDebug(namespaces: string | undefined): string | undefined {
  if (!namespaces || namespaces.split(/[\s,]+/).includes(EXCLUDE_MODEM)) return namespaces;
  return `${namespaces},${EXCLUDE_MODEM}`;
}

/** Before dockerode is first imported: the debug module reads DEBUG once, when it loads. */
export function excludeModemFromDebugEnv(env: NodeJS.ProcessEnv = process.env): void {
  const namespaces = withoutModemDebug(env.DEBUG);
  if (namespaces !== undefined) env.DEBUG = namespaces;
}

/**
 * After the import: a debug module another library loaded earlier has read DEBUG already, so tell
 * the very instance docker-modem uses. Best effort — the env change covers a freshly loaded one.
 */
export function excludeModemFromLoadedDebug(): void {
  try {
    const fromDockerode = createRequire(createRequire(import.meta.url).resolve("dockerode"));
    const debug = createRequire(fromDockerode.resolve("docker-modem"))("debug") as { disable(): string; enable(namespaces: string): void };
    const namespaces = debug.disable();
    debug.enable(withoutModemDebug(namespaces) ?? "");
  } catch {
    // Not resolvable from here (an unusual install layout): the environment change stands.
  }
}
