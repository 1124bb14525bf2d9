/**
 * Where a registry name is reached: Docker Hub's API lives at registry-1.docker.io with tokens from
 * auth.docker.io; loopback registries (and ones the user lists as insecure) are spoken to over plain
 * HTTP, as dockerd does; everything else over HTTPS.
 */
export interface RegistryEndpoint {
  /** Base URL of the registry API, without `/v2/` (e.g. `https://registry-1.docker.io`). */
  url: string;
  /** A token endpoint known in advance: the first request fetches a token instead of taking a 401. */
  tokenRealm?: string;
  tokenService?: string;
}

export const DOCKER_HUB_ENDPOINT: RegistryEndpoint = {
  url: "https://registry-1.docker.io",
  tokenRealm: "https://auth.docker.io/token",
  tokenService: "registry.docker.io",
};

const DOCKER_HUB_NAMES = new Set(["docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"]);

export function isDockerHub(registry: string): boolean {
  return DOCKER_HUB_NAMES.has(registry.toLowerCase());
}

/** `localhost`, `127.0.0.0/8`, `[::1]` — with or without a port. */
export function isLoopbackRegistry(registry: string): boolean {
  const host = hostOf(registry);
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

function hostOf(registry: string): string {
  const lower = registry.toLowerCase();
  if (lower.startsWith("[")) return lower.slice(1, lower.indexOf("]"));
  return lower.split(":")[0]!;
}

/** `KILN_INSECURE_REGISTRIES=a.example:5000,b.example` → the registries reached over plain HTTP. */
export function insecureRegistriesFromEnv(env: NodeJS.ProcessEnv = process.env): string[] {
  return (env.KILN_INSECURE_REGISTRIES ?? "")
    .split(",")
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
}

export function resolveEndpoint(
  registry: string,
  overrides: Readonly<Record<string, RegistryEndpoint>> = {},
  insecure: readonly string[] = [],
): RegistryEndpoint {
  const key = registry.toLowerCase();
  const override = overrides[key] ?? (isDockerHub(key) ? overrides["docker.io"] : undefined);
  if (override) return { ...override, url: override.url.replace(/\/+$/, "") };
  if (isDockerHub(key)) return DOCKER_HUB_ENDPOINT;
  const plain = isLoopbackRegistry(key) || insecure.includes(key) || insecure.includes(hostOf(key));
  return { url: `${plain ? "http" : "https"}://${key}` };
}
