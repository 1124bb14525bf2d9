/**
 * Turns the `(repository, tag)` pair the engine hands a checker into a registry reference, and
 * the platforms it asks about into the list to compare. Bad input is a typed error, never a guess.
 */
import { InvalidReferenceError, toRegistryReference, type Architecture, type RegistryReference } from "@kiln/core";

export const DEFAULT_PLATFORMS: readonly Architecture[] = ["linux/amd64"];

export function referenceFor(repository: string, tag: string): RegistryReference {
  if (typeof repository !== "string" || repository.length === 0) {
    throw new InvalidReferenceError(`Invalid repository ${JSON.stringify(repository)}: it is empty`, {
      hint: "Pass a repository such as \"docker.io/library/python\" or \"ghcr.io/acme/app\".",
      details: { field: "repository", value: repository },
    });
  }
  // A digest passed as the "tag" is looked up by digest.
  const joined = /^sha(256|384|512):[a-f0-9]+$/.test(tag) ? `${repository}@${tag}` : `${repository}:${tag}`;
  return toRegistryReference(joined);
}
