/** How the registry client names what it talks about: a repository in a registry, with a tag or digest. */
import { parseReference } from "../reference.js";

/** A repository in a registry, optionally with a tag or digest (what `parseReference` returns). */
export interface RegistryReference {
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
}

export function toReference(reference: string | RegistryReference): RegistryReference {
  return typeof reference === "string" ? parseReference(reference) : reference;
}

/** `parseReference` as the registry client reads it (Docker normalisation; `docker.io` for Docker Hub). */
export function toRegistryReference(reference: string): RegistryReference {
  return parseReference(reference);
}

export function describeRef(ref: RegistryReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag ? `:${ref.tag}` : ""}${ref.digest ? `@${ref.digest}` : ""}`;
}
