/**
 * The registry auth handshake: parsing `WWW-Authenticate` challenges (Basic; Bearer with realm,
 * service, scope, error) and the token cache. Tokens are cached per registry + scope + identity
 * until shortly before they expire, so the next request sends its token up front instead of
 * taking a 401 first.
 */
export interface AuthChallenge {
  scheme: "basic" | "bearer" | string;
  params: Record<string, string>;
}

/** Parses `Bearer realm="…",service="…",scope="repository:a/b:pull",error="insufficient_scope"`. */
export function parseChallenges(header: string | string[] | undefined): AuthChallenge[] {
  const values = Array.isArray(header) ? header : header ? [header] : [];
  const out: AuthChallenge[] = [];
  for (const value of values) {
    // Several challenges may share one header: a new one starts at "<Scheme> <param>=" after a comma.
    for (const part of value.split(/,\s*(?=[A-Za-z][A-Za-z0-9_-]*\s+[A-Za-z0-9_-]+\s*=)/)) {
      const scheme = /^\s*([A-Za-z][A-Za-z0-9_-]*)/.exec(part);
      if (!scheme) continue;
      const params: Record<string, string> = {};
      const paramRe = /([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
      const rest = part.slice(scheme[0].length);
      let p: RegExpExecArray | null;
      while ((p = paramRe.exec(rest)) !== null) {
        params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, "$1") : (p[3] ?? "");
      }
      out.push({ scheme: scheme[1]!.toLowerCase(), params });
    }
  }
  return out;
}

export interface CachedToken {
  token: string;
  expiresAt: number;
}

/** Tokens by key; a token is reused until `skewMs` before its expiry. */
export class TokenCache {
  private readonly tokens = new Map<string, CachedToken>();
  constructor(private readonly skewMs = 10_000) {}

  get(key: string, now = Date.now()): string | undefined {
    const entry = this.tokens.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt - this.skewMs <= now) {
      this.tokens.delete(key);
      return undefined;
    }
    return entry.token;
  }

  set(key: string, token: string, expiresInSeconds: number, issuedAt = Date.now()): void {
    this.tokens.set(key, { token, expiresAt: issuedAt + expiresInSeconds * 1000 });
  }

  delete(key: string): void {
    this.tokens.delete(key);
  }

  clear(): void {
    this.tokens.clear();
  }
}

/** Token lifetime from a token-endpoint answer; the distribution spec's default is 60 s. */
export function tokenLifetimeSeconds(answer: { expires_in?: unknown }): number {
  const value = Number(answer.expires_in);
  return Number.isFinite(value) && value > 0 ? value : 60;
}
