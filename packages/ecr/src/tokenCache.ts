/**
 * In-memory cache of ECR authorization tokens, one per registry. A token lives 12 hours; it is
 * replaced well before that (when under an hour is left, or after 11 hours), and concurrent callers
 * share a single GetAuthorizationToken request (core's `InFlight`, as for every shared fetch in Kiln).
 */
import { InFlight } from "@kiln/core/plugin";

export interface EcrToken {
  username: string;
  password: string;
  /** Epoch milliseconds. */
  expiresAt: number;
}

export interface TokenCacheOptions {
  /** Refresh when less than this is left before expiry. Default 1 hour. */
  refreshBeforeExpiryMs?: number;
  /** Refresh a token older than this even if ECR gave it a longer life. Default 11 hours. */
  maxTokenAgeMs?: number;
  now?: () => number;
}

interface Entry {
  token: EcrToken;
  fetchedAt: number;
}

export const HOUR_MS = 60 * 60 * 1000;
/** A refresh that fails may fall back to the cached token while it has at least this long to live. */
const MIN_USABLE_MS = 5 * 60 * 1000;

export class EcrTokenCache {
  private readonly entries = new Map<string, Entry>();
  private readonly inFlight = new InFlight<EcrToken>();
  private readonly refreshBeforeExpiryMs: number;
  private readonly maxTokenAgeMs: number;
  private readonly now: () => number;

  constructor(
    private readonly fetchToken: (key: string) => Promise<EcrToken>,
    options: TokenCacheOptions = {},
  ) {
    this.refreshBeforeExpiryMs = options.refreshBeforeExpiryMs ?? HOUR_MS;
    this.maxTokenAgeMs = options.maxTokenAgeMs ?? 11 * HOUR_MS;
    this.now = options.now ?? Date.now;
  }

  async get(key: string): Promise<EcrToken> {
    const entry = this.entries.get(key);
    if (entry && this.isFresh(entry)) return entry.token;
    return this.inFlight.run(key, () => this.refresh(key, entry));
  }

  clear(): void {
    this.entries.clear();
  }

  private async refresh(key: string, previous: Entry | undefined): Promise<EcrToken> {
    try {
      const token = await this.fetchToken(key);
      this.entries.set(key, { token, fetchedAt: this.now() });
      return token;
    } catch (error) {
      // A failed early refresh should not fail a push while the old token still works.
      if (previous && previous.token.expiresAt - this.now() > MIN_USABLE_MS) return previous.token;
      this.entries.delete(key);
      throw error;
    }
  }

  private isFresh(entry: Entry): boolean {
    const now = this.now();
    return entry.token.expiresAt - now > this.refreshBeforeExpiryMs && now - entry.fetchedAt < this.maxTokenAgeMs;
  }
}
