/**
 * A small Docker token service (the "Bearer" half of registry auth) for tests. It issues RS256 JWTs
 * with an `x5c` header carrying a self-signed certificate that the registry trusts through its
 * `auth.token.rootcertbundle` — the scheme distribution 2.8 verifies. It speaks both token flows:
 * GET /token (anonymous or HTTP Basic) and POST /token with the OAuth2 refresh-token grant
 * (what a docker config `identitytoken` is exchanged through). It counts requests so tests can
 * prove tokens are cached.
 */
import { execFileSync } from "node:child_process";
import { createPrivateKey, randomUUID, sign } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";

export interface TokenServerOptions {
  service?: string;
  issuer?: string;
  /** username → password accepted with HTTP Basic. */
  users?: Record<string, string>;
  /** identity (refresh) token → username, accepted by the refresh-token grant. */
  identityTokens?: Record<string, string>;
  /** Repositories anonymous users may pull (exact names, or a prefix ending in `/`). */
  publicRepositories?: string[];
  /** Token lifetime in seconds (default 300). */
  expiresIn?: number;
}

export interface TokenRequestLog {
  method: string;
  scopes: string[];
  /** Who the request authenticated as ("" for anonymous). */
  account: string;
  grant: "anonymous" | "basic" | "refresh_token" | "rejected";
}

export interface TokenServer {
  /** The realm URL (`http://127.0.0.1:<port>/token`). */
  realm: string;
  service: string;
  issuer: string;
  /** PEM certificate the registry must trust (`rootcertbundle`). */
  certPath: string;
  requests: TokenRequestLog[];
  /** Issues a token directly (for test fixtures that push). */
  issue(account: string, scopes: string[]): string;
  stop(): Promise<void>;
}

export async function startTokenServer(options: TokenServerOptions = {}): Promise<TokenServer> {
  const service = options.service ?? "kiln-test-registry";
  const issuer = options.issuer ?? "kiln-test-issuer";
  const users = options.users ?? {};
  const identityTokens = options.identityTokens ?? {};
  const expiresIn = options.expiresIn ?? 300;
  const dir = await mkdtemp(path.join(os.tmpdir(), "kiln-token-"));
  const keyPath = path.join(dir, "key.pem");
  const certPath = path.join(dir, "cert.pem");
  execFileSync(
    "openssl",
    ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", keyPath, "-out", certPath, "-days", "2", "-subj", "/CN=kiln-test-token"],
    { stdio: "ignore" },
  );
  const privateKey = createPrivateKey(await readFile(keyPath));
  const certDer = (await readFile(certPath, "utf8")).replace(/-----(BEGIN|END) CERTIFICATE-----|\s+/g, "");

  const b64url = (data: Buffer | string) => Buffer.from(data).toString("base64url");
  const issue = (account: string, scopes: string[]): string => {
    const now = Math.floor(Date.now() / 1000);
    const access = scopes.flatMap((scope) => grantedAccess(scope, account, options.publicRepositories ?? []));
    const headerPart = b64url(JSON.stringify({ typ: "JWT", alg: "RS256", x5c: [certDer] }));
    const claims = b64url(
      JSON.stringify({ iss: issuer, sub: account, aud: service, exp: now + expiresIn, nbf: now - 10, iat: now, jti: randomUUID(), access }),
    );
    const signature = sign("sha256", Buffer.from(`${headerPart}.${claims}`), privateKey);
    return `${headerPart}.${claims}.${b64url(signature)}`;
  };

  const requests: TokenRequestLog[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const url = new URL(req.url ?? "/", "http://localhost");
      const reply = (status: number, body: unknown) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(body));
      };
      if (url.pathname !== "/token") return reply(404, { error: "not found" });
      if (req.method === "POST") {
        const form = new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
        const scopes = (form.get("scope") ?? "").split(" ").filter(Boolean);
        const account = form.get("grant_type") === "refresh_token" ? identityTokens[form.get("refresh_token") ?? ""] : undefined;
        if (!account) {
          requests.push({ method: "POST", scopes, account: "", grant: "rejected" });
          return reply(401, { error: "invalid_grant" });
        }
        requests.push({ method: "POST", scopes, account, grant: "refresh_token" });
        return reply(200, { access_token: issue(account, scopes), expires_in: expiresIn, issued_at: new Date().toISOString() });
      }
      const scopes = url.searchParams
        .getAll("scope")
        .flatMap((s) => s.split(" "))
        .filter(Boolean);
      let account = "";
      let grant: TokenRequestLog["grant"] = "anonymous";
      const authorization = req.headers.authorization;
      if (authorization?.startsWith("Basic ")) {
        const decoded = Buffer.from(authorization.slice(6), "base64").toString("utf8");
        const colon = decoded.indexOf(":");
        const user = decoded.slice(0, colon);
        if (colon < 0 || users[user] === undefined || users[user] !== decoded.slice(colon + 1)) {
          requests.push({ method: "GET", scopes, account: "", grant: "rejected" });
          res.setHeader("www-authenticate", `Basic realm="${service}"`);
          return reply(401, { errors: [{ code: "UNAUTHORIZED", message: "bad credentials" }] });
        }
        account = user;
        grant = "basic";
      }
      requests.push({ method: "GET", scopes, account, grant });
      const token = issue(account, scopes);
      reply(200, { token, access_token: token, expires_in: expiresIn, issued_at: new Date().toISOString() });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    certPath,
    requests,
    issue,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A logged-in account gets what it asked for; anonymous users only pull public repositories. */
function grantedAccess(scope: string, account: string, publicRepositories: string[]) {
  const [type, ...rest] = scope.split(":");
  const actions = (rest.pop() ?? "").split(",").filter(Boolean);
  const name = rest.join(":");
  if (type !== "repository" || !name) return [];
  if (account) return [{ type, name, actions }];
  const isPublic = publicRepositories.some((p) => (p.endsWith("/") ? name.startsWith(p) : name === p));
  return isPublic && actions.includes("pull") ? [{ type, name, actions: ["pull"] }] : [];
}
