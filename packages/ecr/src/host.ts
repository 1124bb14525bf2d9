/**
 * ECR registry hosts. The host names the account (registry id) and the region, so a user writes
 * only the image URI and Kiln knows which API endpoint and which registry to ask.
 *
 *   <account>.dkr.ecr.<region>.amazonaws.com            standard
 *   <account>.dkr.ecr-fips.<region>.amazonaws.com       FIPS
 *   <account>.dkr-ecr.<region>.on.aws                   dual-stack (IPv4 + IPv6)
 *   <account>.dkr-ecr-fips.<region>.on.aws              dual-stack FIPS
 *   <account>.dkr.ecr.<region>.amazonaws.com.cn         China
 *   <account>.dkr-ecr.<region>.on.amazonwebservices.com.cn   China dual-stack
 */
import { InvalidReferenceError, ValidationError } from "@kiln/core";

export interface EcrRegistry {
  /** The registry host as given (lower-cased), e.g. `123456789012.dkr.ecr.eu-west-1.amazonaws.com`. */
  host: string;
  /** The 12-digit AWS account id that owns the registry (ECR's `registryId`). */
  registryId: string;
  region: string;
  fips: boolean;
  dualStack: boolean;
}

/** A non-ECR host (a proxy, a test registry, a pull-through alias) that stands for an ECR registry. */
export interface EcrRegistryAlias {
  registryId: string;
  region: string;
  fips?: boolean;
  dualStack?: boolean;
}

export type EcrRegistryAliases = Readonly<Record<string, EcrRegistryAlias>>;

const REGION = "[a-z]{2}(?:-[a-z]+)+-\\d+";
const ACCOUNT = "\\d{12}";
const HOST_FORMS: ReadonlyArray<{ pattern: RegExp; fips: boolean; dualStack: boolean }> = [
  { pattern: new RegExp(`^(${ACCOUNT})\\.dkr\\.ecr\\.(${REGION})\\.amazonaws\\.com(?:\\.cn)?$`), fips: false, dualStack: false },
  { pattern: new RegExp(`^(${ACCOUNT})\\.dkr\\.ecr-fips\\.(${REGION})\\.amazonaws\\.com$`), fips: true, dualStack: false },
  { pattern: new RegExp(`^(${ACCOUNT})\\.dkr-ecr\\.(${REGION})\\.(?:on\\.aws|on\\.amazonwebservices\\.com\\.cn)$`), fips: false, dualStack: true },
  { pattern: new RegExp(`^(${ACCOUNT})\\.dkr-ecr-fips\\.(${REGION})\\.on\\.aws$`), fips: true, dualStack: true },
];

const ACCOUNT_ONLY = new RegExp(`^${ACCOUNT}$`);
const REGION_ONLY = new RegExp(`^${REGION}$`);

/** The ECR registry a host names, or undefined when the host is not an ECR registry host. */
export function parseEcrHost(host: string, aliases: EcrRegistryAliases = {}): EcrRegistry | undefined {
  const lower = host.toLowerCase();
  const alias = aliases[lower] ?? aliases[host];
  if (alias) {
    assertRegistryId(alias.registryId, `registryAliases[${JSON.stringify(host)}].registryId`);
    assertRegion(alias.region, `registryAliases[${JSON.stringify(host)}].region`);
    return { host: lower, registryId: alias.registryId, region: alias.region, fips: !!alias.fips, dualStack: !!alias.dualStack };
  }
  for (const form of HOST_FORMS) {
    const match = form.pattern.exec(lower);
    if (match) return { host: lower, registryId: match[1]!, region: match[2]!, fips: form.fips, dualStack: form.dualStack };
  }
  return undefined;
}

/** True when `host` is an ECR registry host (or one of the configured aliases). */
export function isEcrHost(host: string, aliases: EcrRegistryAliases = {}): boolean {
  return parseEcrHost(host, aliases) !== undefined;
}

/** The canonical registry host of an account and region (standard, FIPS, dual-stack, China). */
export function ecrRegistryHost(registry: Omit<EcrRegistry, "host">): string {
  const china = registry.region.startsWith("cn-");
  if (registry.dualStack) {
    return `${registry.registryId}.dkr-ecr${registry.fips ? "-fips" : ""}.${registry.region}.${china ? "on.amazonwebservices.com.cn" : "on.aws"}`;
  }
  return `${registry.registryId}.dkr.ecr${registry.fips ? "-fips" : ""}.${registry.region}.amazonaws.com${china ? ".cn" : ""}`;
}

export function assertRegistryId(value: unknown, field = "registryId"): asserts value is string {
  if (typeof value !== "string" || !ACCOUNT_ONLY.test(value)) {
    throw new ValidationError(field, value, "an ECR registry id is a 12-digit AWS account id", {
      hint: "Use the account id that owns the registry, e.g. 123456789012.",
    });
  }
}

export function assertRegion(value: unknown, field = "region"): asserts value is string {
  if (typeof value !== "string" || !REGION_ONLY.test(value)) {
    throw new ValidationError(field, value, "not an AWS region name", { hint: "Use a region such as us-east-1 or eu-west-1." });
  }
}

// ECR repository names: lower-case path components separated by `/` (the OCI name grammar).
const REPOSITORY_NAME = /^(?:[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\/)*[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

export interface EcrRepositoryRef {
  /** The registry host in the reference, when it had one. */
  host?: string;
  /** The repository name inside the registry, e.g. `team/app`. */
  repositoryName: string;
}

/**
 * Splits `<host>/<repo>` (or a bare `<repo>`) the way Docker does: the first path component is a
 * host when it has a `.` or `:` or is `localhost`.
 */
export function splitRepository(repository: string): EcrRepositoryRef {
  if (typeof repository !== "string" || repository.length === 0 || repository.length > 512) {
    throw new InvalidReferenceError(`Invalid repository ${JSON.stringify(String(repository)).slice(0, 140)}: empty or too long`, {
      hint: "Pass the repository as <account>.dkr.ecr.<region>.amazonaws.com/<name> or just <name>.",
      details: { field: "repository" },
    });
  }
  const slash = repository.indexOf("/");
  const first = slash === -1 ? "" : repository.slice(0, slash);
  const isHost = first !== "" && (first.includes(".") || first.includes(":") || first === "localhost");
  const host = isHost ? first : undefined;
  const repositoryName = isHost ? repository.slice(slash + 1) : repository;
  if (!REPOSITORY_NAME.test(repositoryName) || repositoryName.length > 256) {
    throw new InvalidReferenceError(
      `Invalid repository ${JSON.stringify(repository).slice(0, 140)}: ${JSON.stringify(repositoryName).slice(0, 100)} is not an ECR repository name`,
      {
        hint: "Repository names are lower-case letters, digits and . _ - separators, with / between path components (e.g. team/app).",
        details: { field: "repository", value: repository },
      },
    );
  }
  return host === undefined ? { repositoryName } : { host: host.toLowerCase(), repositoryName };
}

export function assertTag(tag: unknown): asserts tag is string {
  if (typeof tag !== "string" || !TAG.test(tag)) {
    throw new ValidationError("tag", tag, "a tag is 1-128 characters of letters, digits, _ . - and cannot start with . or -", {
      hint: "Use the image's automatic tag or a tag such as v1.2.3.",
    });
  }
}
