/**
 * Concurrent first requests to a registry behind htpasswd Basic auth (what `kiln plan` and
 * promotion do: several checks of one registry at once). Each goes out anonymously before the
 * scheme is known; the first 401 teaches the client "basic", and every other anonymous request
 * refused meanwhile must be retried with the credentials — not reported as "credentials denied".
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkImage } from "../src/registry/check.js";
import { RegistryClient } from "../src/registry/client.js";
import { pushTestImage, startRegistry, type TestRegistry } from "../../test-utils/src/registry.js";

let registry: TestRegistry;
const dockerConfig = mkdtempSync(join(tmpdir(), "kiln-auth-race-"));
beforeAll(async () => {
  registry = await startRegistry({ auth: "basic" });
  const { username, password } = registry.credentials!;
  writeFileSync(
    join(dockerConfig, "config.json"),
    JSON.stringify({ auths: { [registry.host]: { auth: Buffer.from(`${username}:${password}`).toString("base64") } } }),
  );
  await pushTestImage(registry, "race/present", "v1", "oci");
}, 60_000);
afterAll(async () => {
  await registry?.stop();
  rmSync(dockerConfig, { recursive: true, force: true });
});

it("concurrent first checks against a Basic-auth registry all get an answer (present / absent), none a false AuthError", async () => {
  const client = new RegistryClient({ env: { ...process.env, DOCKER_CONFIG: dockerConfig } });
  const refs = [`${registry.host}/race/present:v1`, ...Array.from({ length: 5 }, (_, i) => `${registry.host}/race/absent-${i}:v1`)];
  const answers = await Promise.all(refs.map((ref) => checkImage(ref, { client, platforms: ["linux/amd64"] })));
  expect(answers.map((a) => a.present)).toEqual(refs.map((ref) => ref.includes("/present:")));
  // Wrong credentials are still refused: the retry is for requests that carried none.
  const wrong = mkdtempSync(join(tmpdir(), "kiln-auth-race-wrong-"));
  writeFileSync(join(wrong, "config.json"), JSON.stringify({ auths: { [registry.host]: { auth: Buffer.from("kiln:wrong").toString("base64") } } }));
  const refused = new RegistryClient({ env: { ...process.env, DOCKER_CONFIG: wrong }, retry: { retries: 0 } });
  const results = await Promise.allSettled(refs.slice(0, 3).map((ref) => checkImage(ref, { client: refused })));
  expect(results.every((r) => r.status === "rejected" && (r.reason as { code?: string }).code === "KILN_AUTH")).toBe(true);
  rmSync(wrong, { recursive: true, force: true });
});

/**
 * The Bearer case. A proxy before a token-auth registry answers the first anonymous request at once
 * and holds every later anonymous 401 back, so it lands after the first has taught the client the
 * scheme and fetched a token — deterministically the race. `insufficientScope` makes the held 401
 * say `error="insufficient_scope"`, as Docker Hub and GHCR do for anonymous requests.
 */
async function startRacingProxy(upstream: string, insufficientScope: boolean): Promise<{ host: string; stop(): Promise<void> }> {
  const target = new URL(upstream);
  let anonymousSeen = 0;
  const server = http.createServer((req, res) => {
    const anonymous = req.headers.authorization === undefined;
    const hold = anonymous && anonymousSeen++ > 0;
    const forwarded = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } },
      (answer) => {
        const headers = { ...answer.headers };
        if (hold && answer.statusCode === 401 && insufficientScope && typeof headers["www-authenticate"] === "string") {
          headers["www-authenticate"] = `${headers["www-authenticate"]},error="insufficient_scope"`;
        }
        setTimeout(
          () => {
            res.writeHead(answer.statusCode ?? 502, headers);
            answer.pipe(res);
          },
          hold ? 400 : 0,
        );
      },
    );
    forwarded.on("error", () => res.destroy());
    req.pipe(forwarded);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return { host: `127.0.0.1:${port}`, stop: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe("Bearer: a request sent anonymously while another learnt the scheme", () => {
  let bearer: TestRegistry;
  const config = mkdtempSync(join(tmpdir(), "kiln-auth-race-bearer-"));
  const clientFor = () => new RegistryClient({ env: { ...process.env, DOCKER_CONFIG: config }, retry: { retries: 0 } });
  const configure = (host: string) => {
    const { username, password } = bearer.credentials!;
    writeFileSync(join(config, "config.json"), JSON.stringify({ auths: { [host]: { auth: Buffer.from(`${username}:${password}`).toString("base64") } } }));
  };
  beforeAll(async () => {
    bearer = await startRegistry({ auth: "bearer" });
    await pushTestImage(bearer, "race/present", "v1", "oci");
  }, 60_000);
  afterAll(async () => {
    await bearer?.stop();
    rmSync(config, { recursive: true, force: true });
  });

  it("is retried with the token held, which is kept (no forced refresh)", async () => {
    const proxy = await startRacingProxy(bearer.url, false);
    try {
      configure(proxy.host);
      const before = bearer.tokenServer!.requests.length;
      const client = clientFor();
      const ref = `${proxy.host}/race/present:v1`;
      const answers = await Promise.all([ref, ref].map((r) => checkImage(r, { client, platforms: ["linux/amd64"] })));
      expect(answers.map((a) => a.present)).toEqual([true, true]);
      expect(bearer.tokenServer!.requests.length - before).toBe(1);
    } finally {
      await proxy.stop();
    }
  });

  it("answered insufficient_scope, is retried with the token, not reported denied", async () => {
    const proxy = await startRacingProxy(bearer.url, true);
    try {
      configure(proxy.host);
      const client = clientFor();
      const ref = `${proxy.host}/race/present:v1`;
      const answers = await Promise.all([ref, ref].map((r) => checkImage(r, { client, platforms: ["linux/amd64"] })));
      expect(answers.map((a) => a.present)).toEqual([true, true]);
    } finally {
      await proxy.stop();
    }
  });
});
