/**
 * DockerHubImageChecker pointed at local stand-ins for registry-1.docker.io and auth.docker.io: a
 * real Bearer-auth registry (distribution 2.8) and the token-server fixture, with `library/` public
 * and `acme/` private — the way Docker Hub behaves.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthError, CheckFailedError, InvalidReferenceError, type BuildEvent } from "@kiln/core";
import { runCheckers, toNamedChecker } from "@kiln/core/plugin";
import { describeCheckerConformance } from "@kiln/core/testing";
import { DockerHubImageChecker } from "../src/index.js";
import { startFaultProxy, type FaultProxy } from "../../test-utils/src/faultProxy.js";
import { pushTestImage, startRegistry, type TestRegistry } from "../../test-utils/src/registry.js";

let hub: TestRegistry;
let proxy: FaultProxy;

beforeAll(async () => {
  hub = await startRegistry({ auth: "bearer", publicRepositories: ["library/"] });
  await pushTestImage(hub, "library/busybox", "1.36", "oci-index-with-attestation");
  await pushTestImage(hub, "library/alpine", "3.19", "docker-v2", { platforms: ["linux/amd64"], architectureSpelling: { amd64: "x86_64" } });
  await pushTestImage(hub, "library/partial", "1", "oci-index-missing-platform");
  await pushTestImage(hub, "acme/private", "v1", "docker-manifest-list");
  // A pass-through proxy in front, so tests can see each request the checker makes.
  proxy = await startFaultProxy(hub.url);
});
afterAll(async () => {
  await proxy?.stop();
  await hub?.stop();
});

function checker(options: { credentials?: boolean; anonymousDenial?: "absent" | "error"; events?: BuildEvent[] } = {}) {
  return new DockerHubImageChecker({
    registryUrl: proxy.url,
    authRealm: hub.tokenServer!.realm,
    authService: hub.tokenServer!.service,
    anonymousDenial: options.anonymousDenial,
    clientOptions: {
      useDockerConfig: false,
      credentials: options.credentials ? { "docker.io": hub.credentials! } : {},
      retry: { retries: 1, baseDelayMs: 10 },
      onEvent: options.events ? (e) => options.events!.push(e) : undefined,
    },
  });
}

describe("DockerHubImageChecker", () => {
  it("normalises Docker Hub names: bare, library/, docker.io, index.docker.io", async () => {
    const c = checker();
    for (const repository of ["busybox", "library/busybox", "docker.io/library/busybox", "docker.io/busybox", "index.docker.io/library/busybox"]) {
      expect(await c.imageExists(repository, "1.36", ["linux/amd64", "linux/arm64"])).toBe(`${repository}:1.36`);
    }
  });

  it("asks the token service up front and HEADs (no GET) when only existence is needed", async () => {
    const c = checker();
    proxy.requests.length = 0;
    const head = await c.client.headManifest("busybox:1.36");
    expect(head?.digest).toMatch(/^sha256:/);
    expect(proxy.requests).toHaveLength(1);
    expect(proxy.requests[0]).toMatchObject({ method: "HEAD", path: "/v2/library/busybox/manifests/1.36" });
    expect(proxy.requests[0]!.authorization).toMatch(/^Bearer /);
  });

  it("answers for every requested platform", async () => {
    const c = checker();
    expect(await c.imageExists("alpine", "3.19", ["linux/amd64"])).toBe("alpine:3.19");
    expect(await c.imageExists("alpine", "3.19", ["linux/amd64", "linux/arm64"])).toBeNull();
    expect(await c.imageExists("partial", "1", ["linux/amd64"])).toBe("partial:1");
    expect(await c.imageExists("partial", "1", ["linux/amd64", "linux/arm64"])).toBeNull();
    expect(await c.imageExists("busybox", "missing-tag")).toBeNull();
  });

  it("anonymous 401 for a private or missing repository is reported absent (documented decision)", async () => {
    const c = checker();
    expect(await c.imageExists("acme/private", "v1")).toBeNull();
    expect(await c.imageExists("acme/never-pushed", "v1")).toBeNull();
  });

  it("with anonymousDenial: 'error' the same answer is an AuthError (could not tell)", async () => {
    const error = await checker({ anonymousDenial: "error" })
      .imageExists("acme/private", "v1")
      .catch((e: unknown) => e);
    expect(AuthError.isInstance(error)).toBe(true);
    expect((error as AuthError).hint).toMatch(/docker login/);
  });

  it("with credentials it sees the private repository", async () => {
    const events: BuildEvent[] = [];
    const c = checker({ credentials: true, events });
    expect(await c.imageExists("acme/private", "v1", ["linux/amd64", "linux/arm64"])).toBe("acme/private:v1");
    expect(hub.tokenServer!.requests.at(-1)).toMatchObject({ grant: "basic", account: hub.credentials!.username });
    expect(JSON.stringify(events)).not.toContain(hub.credentials!.password);
  });

  it("refuses a repository of another registry with a hint", async () => {
    const error = await checker()
      .imageExists("ghcr.io/acme/app", "v1")
      .catch((e: unknown) => e);
    expect(InvalidReferenceError.isInstance(error)).toBe(true);
    expect((error as InvalidReferenceError).hint).toMatch(/registry/);
  });

  it("has the guide's class form with a static imageExists", () => {
    expect(typeof DockerHubImageChecker.imageExists).toBe("function");
  });
});

// Cancellation (an aborted check rejects, never answers; an abort mid-request closes it) is part of the suite.
describeCheckerConformance("DockerHubImageChecker", {
  create: async () => ({
    checker: checker(),
    present: { repository: "busybox", tag: "1.36", platforms: ["linux/amd64", "linux/arm64"] },
    absent: { repository: "busybox", tag: "nope", platforms: ["linux/amd64"] },
    wrongArch: { repository: "alpine", tag: "3.19", platforms: ["linux/amd64", "linux/arm64"] },
    failing: () =>
      new DockerHubImageChecker({
        registryUrl: "http://127.0.0.1:1",
        clientOptions: { useDockerConfig: false, retry: { retries: 0 }, timeouts: { connectMs: 500 } },
      }),
  }),
  // Docker Hub's API played by a server that never answers; patient timeouts, so only the abort ends the request.
  hanging: (server) => ({
    checker: new DockerHubImageChecker({
      registryUrl: server.url,
      clientOptions: { useDockerConfig: false, retry: { retries: 2, baseDelayMs: 10 }, timeouts: { connectMs: 5_000, idleMs: 30_000, totalMs: 60_000 } },
    }),
    target: { repository: "app", tag: "v1", platforms: ["linux/amd64"] },
  }),
});

describe("DockerHubImageChecker.answersFor: Docker Hub's repositories only", () => {
  it("claims Docker Hub's names, declines other registries, OCI layouts and invalid names", () => {
    const hubChecker = new DockerHubImageChecker();
    for (const repository of ["python", "acme/app", "docker.io/library/python", "index.docker.io/acme/app", "registry-1.docker.io/acme/app"]) {
      expect(hubChecker.answersFor(repository), repository).toBe(true);
    }
    for (const repository of [
      "ghcr.io/acme/app",
      "localhost:5000/app",
      "123456789012.dkr.ecr.us-east-1.amazonaws.com/app",
      "oci:/tmp/layout",
      "",
      "Not A Name",
    ]) {
      expect(hubChecker.answersFor(repository), repository).toBe(false);
    }
  });

  it("through the engine (the class form, as registered): another registry's image is not asked — strict mode says no checker answers for it", async () => {
    const named = toNamedChecker(DockerHubImageChecker, "dockerhub");
    expect(named.answersFor?.("busybox")).toBe(true);
    const events: BuildEvent[] = [];
    const error = await runCheckers([named], "ghcr.io/acme/app", "v1", ["linux/amd64"], {
      image: "ghcr.io/acme/app:v1",
      strict: true,
      onEvent: (e) => events.push(e),
    }).catch((e: unknown) => e);
    expect(CheckFailedError.isInstance(error), String(error)).toBe(true);
    expect((error as Error).message).toMatch(/answers for ghcr\.io\/acme\/app/);
    expect(events.filter((e) => e.type === "check.start")).toHaveLength(0);
  });
});
