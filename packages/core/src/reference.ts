/**
 * Image references with Docker's normalisation, following distribution/reference's
 * `ParseNormalizedNamed`: `ubuntu` is `docker.io/library/ubuntu`, a first path component is a
 * registry only if it contains `.` or `:`, is `localhost`, or has uppercase letters; `index.docker.io`
 * is `docker.io`; the name (registry + "/" + repository) is at most 255 characters; a tag is at most
 * 128; digests are `<algorithm>:<hex>` with a registered algorithm and the right hex length.
 */
import { InvalidReferenceError } from "./errors.js";

export interface ParsedReference {
  /** Registry host[:port], `docker.io` for Docker Hub. */
  registry: string;
  /** Repository path inside the registry, e.g. `library/ubuntu`. */
  repository: string;
  tag?: string;
  /** `sha256:<64 lowercase hex>` (or sha384/sha512). */
  digest?: string;
}

export const DOCKER_HUB_REGISTRY = "docker.io";

/**
 * A `registry` of the form `oci:<dir>` (e.g. `oci:./images`, `oci:/abs/path`) names an OCI image
 * layout directory on this machine, not a registry host: the oci builder writes `<dir>/<name>` as a
 * layout, and registry code (checkers, digest lookups, shared check caches) must leave it alone.
 */
export const OCI_LAYOUT_PREFIX = "oci:";

/** True for an `oci:<dir>` registry, or a repository / reference under one. */
export function isOciLayoutTarget(registryOrReference: string): boolean {
  return registryOrReference.startsWith(OCI_LAYOUT_PREFIX);
}
const LEGACY_DOCKER_HUB = "index.docker.io";
const OFFICIAL_REPO_PREFIX = "library/";
const NAME_TOTAL_LENGTH_MAX = 255;

// The grammar of distribution/reference's regexp.go.
const ALPHANUMERIC = "[a-z0-9]+";
const SEPARATOR = "(?:[._]|__|[-]+)";
const PATH_COMPONENT = `${ALPHANUMERIC}(?:${SEPARATOR}${ALPHANUMERIC})*`;
const PATH_RE = new RegExp(`^${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`);
const DOMAIN_COMPONENT = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const DOMAIN_NAME = `${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*`;
const IPV6_HOST = "\\[[a-fA-F0-9:]+\\]";
const DOMAIN_RE = new RegExp(`^(?:${DOMAIN_NAME}|${IPV6_HOST})(?::[0-9]+)?$`);
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const DIGEST_RE = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;
const HEX64_RE = /^[a-f0-9]{64}$/;
const DIGEST_HEX_LENGTH: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };

function invalid(ref: string, reason: string, hint: string): InvalidReferenceError {
  return new InvalidReferenceError(`Invalid image reference ${JSON.stringify(ref)}: ${reason}`, {
    hint,
    details: { field: "reference", value: ref },
  });
}

function safeString(value: unknown): string {
  try {
    return String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/** Splits off a Docker Hub default registry the way distribution's `splitDockerDomain` does. */
function splitDomain(name: string): [domain: string, remainder: string] {
  const slash = name.indexOf("/");
  const first = slash === -1 ? "" : name.slice(0, slash);
  let domain: string;
  let remainder: string;
  if (slash === -1 || (!/[.:]/.test(first) && first !== "localhost" && first.toLowerCase() === first)) {
    domain = DOCKER_HUB_REGISTRY;
    remainder = name;
  } else {
    domain = first;
    remainder = name.slice(slash + 1);
  }
  if (domain === LEGACY_DOCKER_HUB) domain = DOCKER_HUB_REGISTRY;
  if (domain === DOCKER_HUB_REGISTRY && !remainder.includes("/")) remainder = OFFICIAL_REPO_PREFIX + remainder;
  return [domain, remainder];
}

/** Parses and normalises an image reference; throws `InvalidReferenceError` with a hint. */
export function parseReference(ref: string): ParsedReference {
  if (typeof ref !== "string" || ref.length === 0) {
    // Not `String(ref)` alone: it throws for an object without a prototype, hiding this typed error.
    const shown = typeof ref === "string" ? ref : safeString(ref);
    throw invalid(
      shown,
      typeof ref === "string" ? "it is empty" : `expected a string, got ${ref === null ? "null" : typeof ref}`,
      "Give an image reference such as `ubuntu:22.04` or `ghcr.io/acme/app:1.0`.",
    );
  }
  if (HEX64_RE.test(ref)) {
    throw invalid(ref, "a 64-character hexadecimal string is an image ID, not a repository name", "Use `name@sha256:<digest>` to pin a digest.");
  }
  if (/\s/.test(ref)) {
    throw invalid(ref, "it contains whitespace", "Remove spaces, tabs and newlines from the reference.");
  }

  // `name[:tag][@digest]`: the digest follows the last "@", the tag the last ":" after the last "/".
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST_RE.test(digest)) {
      throw invalid(ref, `the digest ${JSON.stringify(digest)} is malformed`, "A digest looks like `sha256:` followed by 64 lowercase hex characters.");
    }
    const [algorithm, hex] = digest.split(":") as [string, string];
    const length = DIGEST_HEX_LENGTH[algorithm];
    if (length === undefined) {
      throw invalid(ref, `the digest algorithm ${JSON.stringify(algorithm)} is not supported`, "Use a sha256 (or sha384/sha512) digest.");
    }
    if (hex.length !== length || !/^[a-f0-9]+$/.test(hex)) {
      throw invalid(ref, `a ${algorithm} digest needs exactly ${length} lowercase hex characters`, "Copy the digest exactly as the registry reports it.");
    }
  }

  const [domain, remainder] = splitDomain(rest);
  let path = remainder;
  let tag: string | undefined;
  const colon = remainder.lastIndexOf(":");
  if (colon !== -1 && !remainder.slice(colon).includes("/")) {
    tag = remainder.slice(colon + 1);
    path = remainder.slice(0, colon);
  }
  if (path.toLowerCase() !== path) {
    throw invalid(
      ref,
      `the repository name ${JSON.stringify(path)} must be lowercase`,
      "Use only lowercase letters in the repository name (the registry host may have any case).",
    );
  }
  if (!DOMAIN_RE.test(domain)) {
    throw invalid(ref, `${JSON.stringify(domain)} is not a valid registry host`, "A registry is `host`, `host:port` or `[ipv6]:port`, e.g. `localhost:5000`.");
  }
  if (!PATH_RE.test(path)) {
    throw invalid(
      ref,
      `the repository name ${JSON.stringify(path)} is not valid`,
      "Repository path components are lowercase letters and digits, separated by `.`, `_`, `__` or dashes, joined by `/`.",
    );
  }
  const nameLength = domain.length + 1 + path.length;
  if (nameLength > NAME_TOTAL_LENGTH_MAX) {
    throw invalid(ref, `the name is ${nameLength} characters long (at most ${NAME_TOTAL_LENGTH_MAX})`, "Shorten the registry or repository path.");
  }
  if (tag !== undefined && !TAG_RE.test(tag)) {
    throw invalid(
      ref,
      tag.length > 128 ? `the tag is ${tag.length} characters long (at most 128)` : `the tag ${JSON.stringify(tag)} is not valid`,
      "A tag is up to 128 letters, digits, `_`, `.` and `-`, and does not start with `.` or `-`.",
    );
  }

  const parsed: ParsedReference = { registry: domain, repository: path };
  if (tag !== undefined) parsed.tag = tag;
  if (digest !== undefined) parsed.digest = digest;
  return parsed;
}

export interface FormatReferenceOptions {
  /** Docker's short form: drop `docker.io/` and `library/` (`ubuntu:22.04`). Default false. */
  familiar?: boolean;
}

/** The canonical text of a parsed reference: `registry/repository[:tag][@digest]`. */
export function formatReference(ref: ParsedReference, options: FormatReferenceOptions = {}): string {
  let name = `${ref.registry}/${ref.repository}`;
  if (options.familiar && ref.registry === DOCKER_HUB_REGISTRY) {
    name =
      ref.repository.startsWith(OFFICIAL_REPO_PREFIX) && !ref.repository.slice(OFFICIAL_REPO_PREFIX.length).includes("/")
        ? ref.repository.slice(OFFICIAL_REPO_PREFIX.length)
        : ref.repository;
  }
  return `${name}${ref.tag !== undefined ? `:${ref.tag}` : ""}${ref.digest !== undefined ? `@${ref.digest}` : ""}`;
}
