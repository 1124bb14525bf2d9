/**
 * Turns the `(repository, tag)` pair the engine hands a checker into a registry reference. Bad
 * input is a typed error, never a guess.
 */
import { InvalidReferenceError, isOciLayoutTarget } from "@kiln/core";
import { toRegistryReference, type RegistryReference } from "@kiln/core/plugin";

export function referenceFor(repository: string, tag: string): RegistryReference {
  if (typeof repository !== "string" || repository.length === 0) {
    throw new InvalidReferenceError(`Invalid repository ${JSON.stringify(repository)}: it is empty`, {
      hint: 'Pass a repository such as "docker.io/library/python" or "ghcr.io/acme/app".',
      details: { field: "repository", value: repository },
    });
  }
  // A digest passed as the "tag" is looked up by digest.
  const joined = /^sha(256|384|512):[a-f0-9]+$/.test(tag) ? `${repository}@${tag}` : `${repository}:${tag}`;
  return toRegistryReference(joined);
}

/** The registry `repository` names (`docker.io` for Docker Hub's names); undefined when it names none (an OCI layout directory, an invalid name). */
export function registryOf(repository: string): string | undefined {
  if (typeof repository !== "string" || isOciLayoutTarget(repository)) return undefined;
  try {
    return referenceFor(repository, "latest").registry;
  } catch {
    return undefined;
  }
}
