/**
 * Credentials the way the docker CLI finds them — a temp DOCKER_CONFIG with `auths` (base64,
 * username/password, identity token), `credHelpers` and `credsStore` through a fake
 * `docker-credential-kilntest` helper on PATH — and the credential-provider hook, against real
 * Basic and Bearer registries. No secret may appear in any error or event.
 */
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { AuthError, KilnError } from "../src/errors.js";
import type { BuildEvent } from "../src/events.js";
import { checkImage } from "../src/registry/check.js";
import { RegistryClient } from "../src/registry/client.js";
import { registerCredentialProvider } from "../src/registry/credentials.js";
import { pushTestImage, startRegistry, type TestRegistry } from "../../test-utils/src/registry.js";

const IDENTITY_TOKEN = "kiln-identity-token-7f3a9c";
let basic: TestRegistry;
let bearer: TestRegistry;
let work: string;
let bin: string;
let helperStore: string;
let helperLog: string;
const events: BuildEvent[] = [];
const errors: unknown[] = [];

beforeAll(async () => {
  [basic, bearer] = await Promise.all([startRegistry({ auth: "basic" }), startRegistry({ auth: "bearer", identityTokens: [IDENTITY_TOKEN] })]);
  await pushTestImage(basic, "team/app", "v1", "oci");
  await pushTestImage(bearer, "team/app", "v1", "oci-index-with-attestation");
  await pushTestImage(bearer, "library/busybox", "1.36", "docker-manifest-list");
  work = await mkdtemp(path.join(os.tmpdir(), "kiln-cred-"));
  bin = path.join(work, "bin");
  helperStore = path.join(work, "store");
  helperLog = path.join(work, "helper.log");
  await mkdir(bin);
  await mkdir(helperStore);
  // The docker-credential protocol: `get`, server URL on stdin, JSON on stdout; "not found" exits 1.
  const helper = path.join(bin, "docker-credential-kilntest");
  await writeFile(
    helper,
    `#!/bin/sh
[ "$1" = get ] || exit 2
read -r server || true
printf '%s\\n' "$server" >> "$KILNTEST_LOG"
file="$KILNTEST_STORE/$(printf '%s' "$server" | tr -c 'A-Za-z0-9' '_').json"
if [ -f "$file" ]; then cat "$file"; exit 0; fi
echo "credentials not found in native keychain"
exit 1
`,
  );
  await chmod(helper, 0o755);
});

afterAll(async () => {
  await Promise.all([basic?.stop(), bearer?.stop()]);
  await rm(work, { recursive: true, force: true });
});

let config = 0;
/** A fresh DOCKER_CONFIG dir with this config.json; returns the env a client uses. */
async function dockerConfig(content: unknown): Promise<NodeJS.ProcessEnv> {
  const dir = path.join(work, `config-${config++}`);
  await mkdir(dir);
  await writeFile(path.join(dir, "config.json"), JSON.stringify(content));
  await writeFile(helperLog, "");
  return { ...process.env, DOCKER_CONFIG: dir, PATH: `${bin}:${process.env.PATH}`, KILNTEST_STORE: helperStore, KILNTEST_LOG: helperLog };
}

async function storeInHelper(server: string, username: string, secret: string) {
  const file = path.join(helperStore, `${server.replace(/[^A-Za-z0-9]/g, "_")}.json`);
  await writeFile(file, JSON.stringify({ ServerURL: server, Username: username, Secret: secret }));
}

function client(env: NodeJS.ProcessEnv, extra: ConstructorParameters<typeof RegistryClient>[0] = {}) {
  return new RegistryClient({ env, retry: { retries: 1, baseDelayMs: 10 }, onEvent: (e) => events.push(e), ...extra });
}

async function expectPresent(c: RegistryClient, ref: string) {
  const result = await checkImage(ref, { platforms: ["linux/amd64"], client: c }).catch((e: unknown) => {
    errors.push(e);
    throw e;
  });
  expect(result.present).toBe(true);
}

describe("docker config credentials", () => {
  it("reads a base64 `auth` entry (Basic registry, key with scheme)", async () => {
    const { username, password } = basic.credentials!;
    const env = await dockerConfig({ auths: { [`http://${basic.host}`]: { auth: Buffer.from(`${username}:${password}`).toString("base64") } } });
    await expectPresent(client(env), `${basic.host}/team/app:v1`);
  });

  it("reads a username/password entry (Bearer registry)", async () => {
    const { username, password } = bearer.credentials!;
    const env = await dockerConfig({ auths: { [bearer.host]: { username, password } } });
    await expectPresent(client(env), `${bearer.host}/team/app:v1`);
    expect(bearer.tokenServer!.requests.at(-1)).toMatchObject({ grant: "basic", account: username });
  });

  it("exchanges an identitytoken through the OAuth2 refresh-token grant", async () => {
    const env = await dockerConfig({ auths: { [bearer.host]: { identitytoken: IDENTITY_TOKEN } } });
    await expectPresent(client(env), `${bearer.host}/team/app:v1`);
    expect(bearer.tokenServer!.requests.at(-1)).toMatchObject({ method: "POST", grant: "refresh_token", account: "kiln" });
  });

  it("asks credHelpers[host] through docker-credential-<name> get", async () => {
    await storeInHelper(bearer.host, bearer.credentials!.username, bearer.credentials!.password);
    const env = await dockerConfig({
      credHelpers: { [bearer.host]: "kilntest" },
      auths: { [bearer.host]: { auth: Buffer.from("kiln:wrong").toString("base64") } },
    });
    await expectPresent(client(env), `${bearer.host}/team/app:v1`);
    expect((await readFile(helperLog, "utf8")).trim()).toBe(bearer.host);
  });

  it("reads an identity token (`<token>` username) from a helper", async () => {
    await storeInHelper(bearer.host, "<token>", IDENTITY_TOKEN);
    const env = await dockerConfig({ credHelpers: { [bearer.host]: "kilntest" } });
    await expectPresent(client(env), `${bearer.host}/team/app:v1`);
    expect(bearer.tokenServer!.requests.at(-1)).toMatchObject({ grant: "refresh_token" });
    await storeInHelper(bearer.host, bearer.credentials!.username, bearer.credentials!.password);
  });

  it("uses credsStore with Docker Hub's https://index.docker.io/v1/ key", async () => {
    await storeInHelper("https://index.docker.io/v1/", bearer.credentials!.username, bearer.credentials!.password);
    const env = await dockerConfig({ credsStore: "kilntest", auths: { "https://index.docker.io/v1/": {} } });
    const hub = client(env, { endpoints: { "docker.io": { url: bearer.url } } });
    await expectPresent(hub, "busybox:1.36");
    expect((await readFile(helperLog, "utf8")).trim()).toBe("https://index.docker.io/v1/");
    expect(bearer.tokenServer!.requests.at(-1)).toMatchObject({ grant: "basic", scopes: ["repository:library/busybox:pull"] });
  });

  it("falls back to auths when the store has nothing for the server", async () => {
    const { username, password } = basic.credentials!;
    const env = await dockerConfig({ credsStore: "kilntest", auths: { [basic.host]: { auth: Buffer.from(`${username}:${password}`).toString("base64") } } });
    await expectPresent(client(env), `${basic.host}/team/app:v1`);
    expect((await readFile(helperLog, "utf8")).trim()).toBe(basic.host);
  });

  it("names a missing helper in a typed error with a hint", async () => {
    const env = await dockerConfig({ credHelpers: { [basic.host]: "absent-helper" } });
    const error = await client(env)
      .headManifest(`${basic.host}/team/app:v1`)
      .catch((e: unknown) => e);
    errors.push(error);
    expect(AuthError.isInstance(error)).toBe(true);
    expect((error as AuthError).message).toContain("docker-credential-absent-helper");
    expect((error as AuthError).hint).toMatch(/Install|remove/);
  });

  it("rejected credentials: AuthError naming the registry, never the secret", async () => {
    const env = await dockerConfig({ auths: { [bearer.host]: { username: "kiln", password: "not-the-password-42" } } });
    const error = await client(env)
      .headManifest(`${bearer.host}/team/app:v1`)
      .catch((e: unknown) => e);
    errors.push(error);
    expect(AuthError.isInstance(error)).toBe(true);
    expect((error as KilnError).message).toContain(bearer.host);
    expect(JSON.stringify((error as KilnError).toJSON())).not.toContain("not-the-password-42");
  });
});

describe("credential providers", () => {
  let unregister: (() => void) | undefined;
  afterEach(() => unregister?.());

  it("are consulted before the docker config", async () => {
    const env = await dockerConfig({ auths: { [basic.host]: { auth: Buffer.from("kiln:wrong-from-config").toString("base64") } } });
    const asked: string[] = [];
    unregister = registerCredentialProvider({
      name: "test-provider",
      matches: (host) => host === basic.host,
      getCredentials: (host) => {
        asked.push(host);
        return basic.credentials;
      },
    });
    await expectPresent(client(env), `${basic.host}/team/app:v1`);
    expect(asked).toEqual([basic.host]);
  });

  it("a long-lived client asks its sources again after a few minutes (fresh tokens without a restart)", async () => {
    const env = await dockerConfig({});
    let asked = 0;
    unregister = registerCredentialProvider({
      name: "rotating-provider",
      matches: (host) => host === basic.host,
      getCredentials: () => {
        asked++;
        return basic.credentials;
      },
    });
    const c = client(env);
    await expectPresent(c, `${basic.host}/team/app:v1`);
    await expectPresent(c, `${basic.host}/team/app:v1`);
    expect(asked).toBe(1);
    const now = Date.now();
    vi.spyOn(Date, "now").mockReturnValue(now + 6 * 60_000);
    try {
      await expectPresent(c, `${basic.host}/team/app:v1`);
    } finally {
      vi.restoreAllMocks();
    }
    expect(asked).toBe(2);
  });

  it("a failing provider is an AuthError naming it", async () => {
    const env = await dockerConfig({});
    unregister = registerCredentialProvider({
      name: "broken-provider",
      matches: () => true,
      getCredentials: () => {
        throw new Error("backend down");
      },
    });
    const error = await client(env)
      .headManifest(`${basic.host}/team/app:v1`)
      .catch((e: unknown) => e);
    expect(AuthError.isInstance(error)).toBe(true);
    expect((error as KilnError).message).toContain("broken-provider");
  });
});

it("no credential appears in any error or event", () => {
  const secrets = [basic.credentials!.password, bearer.credentials!.password, IDENTITY_TOKEN, "not-the-password-42"];
  const text = JSON.stringify([events, errors.map((e) => (KilnError.isInstance(e) ? { ...e.toJSON(), stack: e.stack } : String(e)))]);
  expect(events.length + errors.length).toBeGreaterThan(0);
  for (const secret of secrets) {
    expect(text).not.toContain(secret);
    expect(text).not.toContain(Buffer.from(`kiln:${secret}`).toString("base64"));
  }
});
