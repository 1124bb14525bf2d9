/**
 * Promotion sources: the registries an image may be copied from instead of rebuilt, and where in
 * them an image is looked for.
 *
 * Precedence (as for the builder): build({ promoteFrom }) > init({ promoteFrom }) >
 * KILN_PROMOTE_FROM (comma-separated) > "promoteFrom" in the config file > none. An empty list at a
 * higher level turns promotion off (`build(image, { promoteFrom: [] })`).
 *
 * Mapping: an image `<registry>/<name>:<tag>` is looked for as `<source>/<name>:<tag>` in each
 * source, in order — the image's registry (host and namespace, e.g. `ghcr.io/acme`) is replaced by
 * the source (e.g. `ghcr.io/acme-staging`); name and tag stay. So `ghcr.io/acme/api:1f0c…` with
 * `promoteFrom: ["ghcr.io/acme-staging"]` is looked for at `ghcr.io/acme-staging/api:1f0c…`.
 */
import { ConfigError, ValidationError, describeValue } from "../errors.js";
import { isOciLayoutTarget } from "../reference.js";
import { validateRegistry } from "../validate.js";

export const PROMOTE_FROM_ENV = "KILN_PROMOTE_FROM";

/** A list of registries, each validated as an image registry (`oci:` layouts are not registries). */
export function validatePromoteFrom(field: string, value: unknown): string[] {
  if (!Array.isArray(value)) {
    throw new ValidationError(field, value, "expected a list of registries", { hint: 'E.g. ["ghcr.io/acme-staging"] or ["localhost:5000/cache"].' });
  }
  const registries: string[] = [];
  for (const entry of value) {
    if (typeof entry === "string" && isOciLayoutTarget(entry)) {
      throw new ValidationError(field, entry, "an OCI layout directory cannot be promoted from", { hint: 'List registries, e.g. "ghcr.io/acme-staging".' });
    }
    const registry = validateRegistry(field, entry);
    if (!registries.includes(registry)) registries.push(registry);
  }
  return registries;
}

/** KILN_PROMOTE_FROM="ghcr.io/acme-staging,localhost:5000/cache" → the validated list (undefined when unset or empty). */
export function promoteFromEnv(env: NodeJS.ProcessEnv = process.env): string[] | undefined {
  const raw = env[PROMOTE_FROM_ENV];
  if (raw === undefined || raw.trim() === "") return undefined;
  try {
    return validatePromoteFrom(
      PROMOTE_FROM_ENV,
      raw
        .split(",")
        .map((entry) => entry.trim())
        .filter(Boolean),
    );
  } catch (error) {
    if (!ValidationError.isInstance(error)) throw error;
    throw new ConfigError(`Invalid ${PROMOTE_FROM_ENV} ${describeValue(raw)}: ${error.message}`, {
      hint: `Set ${PROMOTE_FROM_ENV} to comma-separated registries, e.g. "ghcr.io/acme-staging,localhost:5000/cache".`,
      cause: error,
      details: { env: PROMOTE_FROM_ENV },
    });
  }
}

/** Where `<name>:<tag>` is looked for in a source registry: `<source>/<name>:<tag>`. */
export function promotionReference(sourceRegistry: string, name: string, tag: string): string {
  return `${sourceRegistry.replace(/\/+$/, "")}/${name}:${tag}`;
}
