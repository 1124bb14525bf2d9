/**
 * ECR API clients. One client per (region, FIPS, dual-stack), all sharing one credential provider
 * from the standard AWS chain (env, shared config and profiles, SSO, web identity, process,
 * container and instance metadata), so credentials are resolved once and refreshed by the SDK.
 */
import { ECRClient } from "@aws-sdk/client-ecr";
import { fromNodeProviderChain } from "@aws-sdk/credential-providers";
import type { EcrRegistryAliases } from "./host.js";

export type AwsCredentialsOption =
  | { accessKeyId: string; secretAccessKey: string; sessionToken?: string; expiration?: Date }
  | (() => Promise<{ accessKeyId: string; secretAccessKey: string; sessionToken?: string; expiration?: Date }>);

/** Options shared by the checker and the credential provider. */
export interface EcrClientOptions {
  /** A ready ECRClient used for every registry (its own region, credentials and retries apply). */
  client?: ECRClient;
  /** Region for repositories given without an ECR host (a host's own region always wins). */
  region?: string;
  /** A named profile from the shared AWS config/credentials files (default: AWS_PROFILE, then "default"). */
  profile?: string;
  /** An API endpoint URL instead of ECR's (a VPC endpoint, LocalStack, a test fake). */
  endpoint?: string;
  /** Credentials instead of the standard chain. */
  credentials?: AwsCredentialsOption;
  /** Attempts per API call, first included (SDK retry strategy). Default 4. */
  maxAttempts?: number;
  /** The SDK's retry mode: "adaptive" adds client-side rate limiting after throttling. Default "adaptive". */
  retryMode?: "standard" | "adaptive";
  /** Extra hosts that stand for an ECR registry (a proxy, a pull-through alias, a test registry). */
  registryAliases?: EcrRegistryAliases;
}

export const DEFAULT_MAX_ATTEMPTS = 4;
export const DEFAULT_RETRY_MODE = "adaptive";

interface ClientKey {
  region?: string;
  fips?: boolean;
  dualStack?: boolean;
}

/** Creates and reuses ECR clients for the registries a checker or provider talks to. */
export class EcrClientPool {
  private readonly clients = new Map<string, ECRClient>();
  private credentials: AwsCredentialsOption | undefined;

  constructor(private readonly options: EcrClientOptions = {}) {}

  get(key: ClientKey = {}): ECRClient {
    if (this.options.client) return this.options.client;
    const region = key.region ?? this.options.region;
    // A custom endpoint replaces ECR's endpoint rules, which refuse FIPS/dual-stack flags with it.
    const fips = !this.options.endpoint && !!key.fips;
    const dualStack = !this.options.endpoint && !!key.dualStack;
    const id = `${region ?? ""}|${fips}|${dualStack}`;
    let client = this.clients.get(id);
    if (!client) {
      client = new ECRClient({
        ...(region ? { region } : {}),
        ...(this.options.profile ? { profile: this.options.profile } : {}),
        ...(this.options.endpoint ? { endpoint: this.options.endpoint } : {}),
        ...(fips ? { useFipsEndpoint: true } : {}),
        ...(dualStack ? { useDualstackEndpoint: true } : {}),
        credentials: this.credentialProvider(region),
        maxAttempts: this.options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
        retryMode: this.options.retryMode ?? DEFAULT_RETRY_MODE,
      });
      this.clients.set(id, client);
    }
    return client;
  }

  /** The region a client will use (its configured one, or what the SDK resolved from env/config). */
  async regionOf(client: ECRClient): Promise<string | undefined> {
    try {
      const region = client.config.region;
      return typeof region === "function" ? await region() : region;
    } catch {
      return undefined;
    }
  }

  destroy(): void {
    for (const client of this.clients.values()) client.destroy();
    this.clients.clear();
  }

  private credentialProvider(region: string | undefined): AwsCredentialsOption {
    if (this.options.credentials) return this.options.credentials;
    // One chain for all regions: the SDK memoises and refreshes what it resolves.
    this.credentials ??= fromNodeProviderChain({
      ...(this.options.profile ? { profile: this.options.profile } : {}),
      ...(region ? { clientConfig: { region } } : {}),
    });
    return this.credentials;
  }
}
