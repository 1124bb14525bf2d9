/**
 * `kiln plugins`' check of each discovered entry: import it and check that the export has the shape
 * of its kind — without creating instances (a builder's constructor may reach for a daemon). The
 * engine never calls this: discovery stays lazy for `build`, importing only what it selects.
 */
import { importProvider, type DiscoveredProvider, type PluginDiscovery, type PluginProblem, type ProviderKind } from "./discovery.js";
import { PluginLoadError, describeValue } from "./errors.js";

/** The methods each kind must have, on the object, on a class's prototype, or (checkers) static. */
const REQUIRED_METHODS: Record<ProviderKind, { methods: string[]; expected: string; staticAllowed?: boolean }> = {
  imageBuilder: { methods: ["buildImage"], expected: "an ImageBuilder (an object or a class with a buildImage(image, options) method)" },
  imageChecker: {
    methods: ["imageExists"],
    expected: "an ImageChecker (a class with a static imageExists, or an object/class with an imageExists method)",
    staticAllowed: true,
  },
  credentialProvider: {
    methods: ["matches", "getCredentials"],
    expected: "a CredentialProvider (an object or a class with matches(host) and getCredentials(host))",
  },
  lockProvider: { methods: ["acquire"], expected: "a LockProvider (an object or a class with acquire(request))" },
  checkCache: {
    methods: ["lookup", "putPresent", "putAbsent", "invalidate", "releaseClaim"],
    expected: "a CheckCache (lookup, putPresent, putAbsent, invalidate and releaseClaim)",
  },
};

const KIND_LABEL: Record<ProviderKind, string> = {
  imageBuilder: "image builder",
  imageChecker: "image checker",
  credentialProvider: "credential provider",
  lockProvider: "lock provider",
  checkCache: "check cache",
};

function hasAll(target: unknown, methods: string[]): boolean {
  return (
    (typeof target === "object" || typeof target === "function") &&
    target !== null &&
    methods.every((m) => typeof (target as Record<string, unknown>)[m] === "function")
  );
}

/** True when `value` has the shape the engine would accept for `kind`. */
export function hasProviderShape(kind: ProviderKind, value: unknown): boolean {
  const { methods, staticAllowed } = REQUIRED_METHODS[kind];
  if (typeof value === "function") {
    return hasAll((value as { prototype?: unknown }).prototype, methods) || (staticAllowed === true && hasAll(value, methods));
  }
  return hasAll(value, methods);
}

/** Imports one entry and checks its shape; the problem found, or undefined when it is usable. */
export async function verifyProvider(provider: DiscoveredProvider): Promise<PluginProblem | undefined> {
  const problem = (error: PluginLoadError): PluginProblem => ({ packageName: provider.packageName, name: provider.name, kind: provider.kind, error });
  let value: unknown;
  try {
    value = await importProvider(provider); // missing file, failing import, missing export
  } catch (error) {
    return problem(PluginLoadError.isInstance(error) ? (error as PluginLoadError) : new PluginLoadError(String(error)));
  }
  if (hasProviderShape(provider.kind, value)) return undefined;
  const { expected } = REQUIRED_METHODS[provider.kind];
  const got = typeof value === "function" ? `class/function ${(value as { name?: string }).name || "(anonymous)"}` : typeof value;
  return problem(
    new PluginLoadError(
      `The ${KIND_LABEL[provider.kind]} ${describeValue(provider.name)} of ${provider.packageName} (${provider.entry}) has the wrong shape: expected ${expected}, got ${got}`,
      { hint: `Make the export ${provider.exportName} ${expected}.`, details: { package: provider.packageName, entry: provider.entry } },
    ),
  );
}

/** Every discovered entry verified (concurrently); the problems found, in discovery order. */
export async function verifyDiscovery(discovery: PluginDiscovery): Promise<PluginProblem[]> {
  const all = [...discovery.imageBuilders, ...discovery.imageCheckers, ...discovery.credentialProviders, ...discovery.lockProviders, ...discovery.checkCaches];
  const found = await Promise.all(all.map((p) => verifyProvider(p)));
  return found.filter((p): p is PluginProblem => p !== undefined);
}
