/**
 * End to end: @kiln/docker builds an image on the real Docker Engine and pushes it to a real
 * registry (distribution 2.8 behind htpasswd Basic auth) with credentials that came from the ECR
 * credential provider — GetAuthorizationToken answered by the fake ECR endpoint with the
 * registry's account. The registry's host is mapped to an ECR registry with `registryAliases`.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Image, KilnError, type BuildEvent } from "@kiln/core";
import { DockerImageBuilder } from "@kiln/docker";
import { DockerCleanup, ensureBusyboxImage, startRegistry, uniqueName, type TestRegistry } from "@kiln/test-utils";
import { registerEcrCredentials } from "../src/credentials.js";
import { FakeEcr } from "./fakeEcr.js";

const ACCOUNT = "123456789012";

let registry: TestRegistry;
let ecr: FakeEcr;
let dockerConfigDir: string;
let env: NodeJS.ProcessEnv;
let base: string;
const cleanup = new DockerCleanup();

beforeAll(async () => {
  [registry, ecr, base] = await Promise.all([startRegistry({ auth: "basic" }), new FakeEcr().start(), ensureBusyboxImage()]);
  // The fake GetAuthorizationToken hands out the Basic-auth registry's account.
  ecr.authorization = { ...registry.credentials!, validForMs: 12 * 60 * 60 * 1000 };
  // An empty docker config: no docker login, no credHelpers — the only credentials are the provider's.
  dockerConfigDir = await mkdtemp(path.join(os.tmpdir(), "kiln-ecr-push-docker-"));
  env = { ...process.env, DOCKER_CONFIG: dockerConfigDir, DOCKER_BUILDKIT: "0" };
});

afterAll(async () => {
  await cleanup.run();
  await Promise.all([registry?.stop(), ecr?.stop()]);
  await rm(dockerConfigDir, { recursive: true, force: true });
});

async function manifestDigest(repository: string, tag: string): Promise<string | null> {
  const response = await fetch(`${registry.url}/v2/${repository}/manifests/${tag}`, {
    method: "HEAD",
    headers: {
      authorization: registry.authorizationFor(repository)!,
      accept: "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
    },
  });
  return response.status === 200 ? response.headers.get("docker-content-digest") : null;
}

describe("push with ECR credentials", () => {
  it("fails to push without the provider (the registry really requires credentials)", async () => {
    const image = Image.fromBase(base, { registry: registry.host, name: uniqueName("ecr-denied") }).withEnvVars({ CASE: "denied" });
    cleanup.image(image.uri);
    const error = await new DockerImageBuilder({ env, buildkit: false }).buildImage(image, {}).catch((e: unknown) => e);
    expect(KilnError.isInstance(error)).toBe(true);
    expect(await manifestDigest(image.name, image.tag)).toBeNull();
  });

  it("pushes with the token from GetAuthorizationToken", async () => {
    const unregister = registerEcrCredentials({
      endpoint: ecr.url,
      credentials: { accessKeyId: "AKIDPUSHTEST", secretAccessKey: "push-secret" },
      registryAliases: { [registry.host]: { registryId: ACCOUNT, region: "us-east-1" } },
      env,
    });
    try {
      const name = uniqueName("ecr-push");
      const image = Image.fromBase(base, { registry: registry.host, name }).withEnvVars({ CASE: "pushed" });
      cleanup.image(image.uri);
      const events: string[] = [];
      const result = await new DockerImageBuilder({ env, buildkit: false }).buildImage(image, {
        onEvent: (event: BuildEvent) => events.push(JSON.stringify(event)),
      });

      expect(result.uri).toBe(`${registry.host}/${name}:${image.tag}`);
      const digest = await manifestDigest(name, image.tag);
      expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
      if (result.digest) expect(result.digest).toBe(digest);

      // The credentials came from ECR's API, asked for the aliased registry's account.
      const tokenCalls = ecr.calls("GetAuthorizationToken");
      expect(tokenCalls.length).toBeGreaterThanOrEqual(1);
      expect(tokenCalls[0]!.body).toEqual({ registryIds: [ACCOUNT] });
      expect(tokenCalls[0]!.headers.authorization).toMatch(/Credential=AKIDPUSHTEST\/\d{8}\/us-east-1\/ecr\//);
      // And never leaked into what the builder reported.
      expect(events.join("\n")).not.toContain(registry.credentials!.password);
    } finally {
      unregister();
    }
  });
});
