import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ECRClient, GetAuthorizationTokenCommand } from "@aws-sdk/client-ecr";
import { mockClient } from "aws-sdk-client-mock";
import { credentialProviders, KilnError } from "@kiln/core";
import { createEcrCredentialProvider, ecrCredentialProvider, registerEcrCredentials } from "../src/credentials.js";
import { configKeyHost, dockerCredHelperFor } from "../src/dockerConfig.js";

const HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
const HOUR = 60 * 60 * 1000;
const ecr = mockClient(ECRClient);
const creds = { accessKeyId: "a", secretAccessKey: "s" };

let dockerConfigDir: string;
let emptyEnv: NodeJS.ProcessEnv;

function tokenResponse(password: string, expiresAt: number) {
  return {
    authorizationData: [
      {
        authorizationToken: Buffer.from(`AWS:${password}`).toString("base64"),
        expiresAt: new Date(expiresAt),
        proxyEndpoint: `https://${HOST}`,
      },
    ],
  };
}

beforeAll(async () => {
  dockerConfigDir = await mkdtemp(path.join(os.tmpdir(), "kiln-ecr-docker-config-"));
  emptyEnv = { DOCKER_CONFIG: path.join(dockerConfigDir, "none") };
});
afterAll(() => rm(dockerConfigDir, { recursive: true, force: true }));
beforeEach(() => ecr.reset());

describe("ECR credential provider", () => {
  it("matches ECR hosts (all forms) and configured aliases only", () => {
    const provider = createEcrCredentialProvider({ registryAliases: { "127.0.0.1:5000": { registryId: "123456789012", region: "eu-west-1" } } });
    expect(provider.name).toBe("ecr");
    for (const host of [
      HOST,
      "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com",
      "123456789012.dkr-ecr.eu-west-1.on.aws",
      "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
      "127.0.0.1:5000",
      `https://${HOST}`,
    ]) {
      expect(provider.matches(host), host).toBe(true);
    }
    for (const host of ["ghcr.io", "docker.io", "127.0.0.1:5001", "public.ecr.aws"]) expect(provider.matches(host), host).toBe(false);
  });

  it("decodes GetAuthorizationToken for the host's registry into AWS / password", async () => {
    ecr.on(GetAuthorizationTokenCommand).resolves(tokenResponse("pw-1", Date.now() + 12 * HOUR));
    const provider = createEcrCredentialProvider({ credentials: creds, env: emptyEnv });
    expect(await provider.getCredentials(HOST)).toEqual({ username: "AWS", password: "pw-1" });
    const [call] = ecr.commandCalls(GetAuthorizationTokenCommand);
    expect(call!.args[0].input).toEqual({ registryIds: ["123456789012"] });
    expect(await (call!.thisValue as ECRClient).config.region()).toBe("eu-west-1");
  });

  it("caches the token per registry", async () => {
    let n = 0;
    ecr
      .on(GetAuthorizationTokenCommand)
      .callsFake(async (input: { registryIds?: string[] }) => tokenResponse(`pw-${input.registryIds![0]}-${++n}`, Date.now() + 12 * HOUR));
    const provider = createEcrCredentialProvider({ credentials: creds, env: emptyEnv });
    expect((await provider.getCredentials(HOST))!.password).toBe("pw-123456789012-1");
    expect((await provider.getCredentials(HOST))!.password).toBe("pw-123456789012-1");
    // Another host of the same registry (FIPS) shares the token; another account gets its own.
    expect((await provider.getCredentials("123456789012.dkr.ecr-fips.eu-west-1.amazonaws.com"))!.password).toBe("pw-123456789012-1");
    expect((await provider.getCredentials("999999999999.dkr.ecr.eu-west-1.amazonaws.com"))!.password).toBe("pw-999999999999-2");
    expect(ecr.commandCalls(GetAuthorizationTokenCommand)).toHaveLength(2);
  });

  it("refreshes when under an hour is left before expiry", async () => {
    let now = 1_000_000_000_000;
    let n = 0;
    ecr.on(GetAuthorizationTokenCommand).callsFake(async () => tokenResponse(`pw-${++n}`, now + 12 * HOUR));
    const provider = createEcrCredentialProvider({ credentials: creds, env: emptyEnv, now: () => now });
    expect((await provider.getCredentials(HOST))!.password).toBe("pw-1");
    now += 10 * HOUR + 59 * 60 * 1000; // 61 minutes left
    expect((await provider.getCredentials(HOST))!.password).toBe("pw-1");
    now += 2 * 60 * 1000; // 59 minutes left
    expect((await provider.getCredentials(HOST))!.password).toBe("pw-2");
    expect(ecr.commandCalls(GetAuthorizationTokenCommand)).toHaveLength(2);
  });

  it("refreshes a token older than 11 hours even when ECR gave it a longer life", async () => {
    let now = 1_000_000_000_000;
    let n = 0;
    ecr.on(GetAuthorizationTokenCommand).callsFake(async () => tokenResponse(`pw-${++n}`, now + 48 * HOUR));
    const provider = createEcrCredentialProvider({ credentials: creds, env: emptyEnv, now: () => now });
    await provider.getCredentials(HOST);
    now += 11 * HOUR - 1;
    expect((await provider.getCredentials(HOST))!.password).toBe("pw-1");
    now += 1;
    expect((await provider.getCredentials(HOST))!.password).toBe("pw-2");
  });

  it("keeps using a still-valid token when an early refresh fails, and fails once it is about to expire", async () => {
    let now = 1_000_000_000_000;
    ecr
      .on(GetAuthorizationTokenCommand)
      .resolvesOnce(tokenResponse("pw-1", now + 12 * HOUR))
      .rejects(Object.assign(new Error("down"), { name: "ServerException", $metadata: {} }));
    const provider = createEcrCredentialProvider({ credentials: creds, env: emptyEnv, now: () => now });
    await provider.getCredentials(HOST);
    now += 11.5 * HOUR; // 30 minutes left: refresh attempted, fails, old token still good
    expect((await provider.getCredentials(HOST))!.password).toBe("pw-1");
    now += 27 * 60 * 1000; // 3 minutes left: no fallback
    const error = await provider.getCredentials(HOST).catch((e: unknown) => e);
    expect(KilnError.isInstance(error)).toBe(true);
    expect((error as KilnError).code).toBe("KILN_AUTH");
    expect((error as KilnError).message).toContain("no push credentials");
  });

  it("shares one in-flight GetAuthorizationToken between concurrent callers", async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    ecr.on(GetAuthorizationTokenCommand).callsFake(async () => {
      await gate;
      return tokenResponse("pw-shared", Date.now() + 12 * HOUR);
    });
    const provider = createEcrCredentialProvider({ credentials: creds, env: emptyEnv });
    const pending = Array.from({ length: 8 }, () => provider.getCredentials(HOST));
    await new Promise((r) => setTimeout(r, 20));
    release();
    const results = await Promise.all(pending);
    expect(results.map((r) => r!.password)).toEqual(Array(8).fill("pw-shared"));
    expect(ecr.commandCalls(GetAuthorizationTokenCommand)).toHaveLength(1);
  });

  it("does not cache a failure: the next call asks again", async () => {
    ecr
      .on(GetAuthorizationTokenCommand)
      .rejectsOnce(Object.assign(new Error("denied"), { name: "AccessDeniedException", $metadata: { httpStatusCode: 400 } }))
      .resolves(tokenResponse("pw-after", Date.now() + 12 * HOUR));
    const provider = createEcrCredentialProvider({ credentials: creds, env: emptyEnv });
    const error = (await provider.getCredentials(HOST).catch((e: unknown) => e)) as KilnError;
    expect(error.code).toBe("KILN_AUTH");
    expect((await provider.getCredentials(HOST))!.password).toBe("pw-after");
  });

  it("never puts the token in an error about a malformed token", async () => {
    ecr
      .on(GetAuthorizationTokenCommand)
      .resolves({ authorizationData: [{ authorizationToken: Buffer.from("no-colon-secret").toString("base64"), expiresAt: new Date() }] });
    const provider = createEcrCredentialProvider({ credentials: creds, env: emptyEnv });
    const error = (await provider.getCredentials(HOST).catch((e: unknown) => e)) as KilnError;
    expect(error.code).toBe("KILN_AUTH");
    expect(JSON.stringify([error.message, error.toJSON()])).not.toContain("no-colon-secret");
  });

  describe("precedence with a docker credHelper (docker-credential-ecr-login)", () => {
    let env: NodeJS.ProcessEnv;
    beforeAll(async () => {
      const dir = path.join(dockerConfigDir, "with-helper");
      await import("node:fs/promises").then((fs) => fs.mkdir(dir, { recursive: true }));
      await writeFile(
        path.join(dir, "config.json"),
        JSON.stringify({
          credHelpers: { [HOST]: "ecr-login" },
          credsStore: "desktop",
          auths: { "999999999999.dkr.ecr.eu-west-1.amazonaws.com": { auth: "QVdTOm9sZA==" } },
        }),
      );
      env = { DOCKER_CONFIG: dir };
    });

    it("steps aside (undefined) for a host the user gave a credHelper, so core uses the helper", async () => {
      ecr.on(GetAuthorizationTokenCommand).resolves(tokenResponse("pw", Date.now() + 12 * HOUR));
      const provider = createEcrCredentialProvider({ credentials: creds, env });
      expect(provider.matches(HOST)).toBe(true);
      expect(await provider.getCredentials(HOST)).toBeUndefined();
      expect(ecr.commandCalls(GetAuthorizationTokenCommand)).toHaveLength(0);
    });

    it("still answers for other ECR hosts, even with a global credsStore or a stale auths entry", async () => {
      ecr.on(GetAuthorizationTokenCommand).resolves(tokenResponse("pw-fresh", Date.now() + 12 * HOUR));
      const provider = createEcrCredentialProvider({ credentials: creds, env });
      expect(await provider.getCredentials("999999999999.dkr.ecr.eu-west-1.amazonaws.com")).toEqual({ username: "AWS", password: "pw-fresh" });
    });

    it('answers anyway with dockerCredHelpers: "ignore"', async () => {
      ecr.on(GetAuthorizationTokenCommand).resolves(tokenResponse("pw-mine", Date.now() + 12 * HOUR));
      const provider = createEcrCredentialProvider({ credentials: creds, env, dockerCredHelpers: "ignore" });
      expect(await provider.getCredentials(HOST)).toEqual({ username: "AWS", password: "pw-mine" });
    });
  });

  it("reads docker config keys the way core does: scheme/path stripped, case folded, Docker Hub's names as one", async () => {
    const dir = path.join(dockerConfigDir, "keys");
    await import("node:fs/promises").then((fs) => fs.mkdir(dir, { recursive: true }));
    await writeFile(
      path.join(dir, "config.json"),
      JSON.stringify({ credHelpers: { "https://index.docker.io/v1/": "hub-helper", [`HTTPS://${HOST.toUpperCase()}/v2/`]: "ecr-login" } }),
    );
    const env = { DOCKER_CONFIG: dir };
    for (const hub of ["docker.io", "registry-1.docker.io", "index.docker.io", "https://registry.hub.docker.com/v1/"]) {
      expect(await dockerCredHelperFor(hub, env), hub).toBe("hub-helper");
    }
    expect(await dockerCredHelperFor(HOST, env)).toBe("ecr-login");
    expect(await dockerCredHelperFor("ghcr.io", env)).toBeUndefined();
    expect(configKeyHost(`https://${HOST}/v2/`)).toBe(HOST);
  });

  it("registers with core's credential-provider hook and unregisters again", () => {
    const unregister = registerEcrCredentials();
    expect(credentialProviders()).toContain(ecrCredentialProvider);
    unregister();
    expect(credentialProviders()).not.toContain(ecrCredentialProvider);

    const unregisterCustom = registerEcrCredentials({ name: "ecr-test", credentials: creds });
    expect(credentialProviders().map((p) => p.name)).toContain("ecr-test");
    unregisterCustom();
    expect(credentialProviders().map((p) => p.name)).not.toContain("ecr-test");
  });
});
