/**
 * Issue 12, items 3 and 7c through both checkers of this package, against the real registry
 * (Docker Hub stand-in: Bearer auth + token server; generic: Basic auth) behind the fault proxy:
 * - an index whose arm64 child manifest was deleted is absent for arm64 (the build rebuilds it);
 * - a child the registry cannot answer for (503) is a thrown error, never "present";
 * - a registry dripping its answer ends the check at the client's deadline with a
 *   RegistryTimeoutError — never "absent".
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type KilnError, RegistryError, RegistryTimeoutError } from "@kiln/core";
import { DockerHubImageChecker, RegistryImageChecker } from "../src/index.js";
import { startFaultProxy, type FaultProxy } from "../../test-utils/src/faultProxy.js";
import { deleteTestManifest, pushTestImage, startRegistry, type PushedTestImage, type TestRegistry } from "../../test-utils/src/registry.js";

const BOTH = ["linux/amd64", "linux/arm64"] as const;
const arm64Of = (pushed: PushedTestImage) => pushed.children!.find((c) => c.platform === "linux/arm64")!.digest;

let hub: TestRegistry;
let generic: TestRegistry;
let hubProxy: FaultProxy;
let genericProxy: FaultProxy;
let hubWhole: PushedTestImage;
let genericWhole: PushedTestImage;

beforeAll(async () => {
  hub = await startRegistry({ auth: "bearer", publicRepositories: ["library/"] });
  generic = await startRegistry({ auth: "basic" });
  // Pushed whole, then the arm64 child deleted (as a registry clean-up policy might).
  const hubGone = await pushTestImage(hub, "library/gone", "1", "oci-index-with-attestation");
  await deleteTestManifest(hub, "library/gone", arm64Of(hubGone));
  const genericGone = await pushTestImage(generic, "team/gone", "v1", "docker-manifest-list");
  await deleteTestManifest(generic, "team/gone", arm64Of(genericGone));
  hubWhole = await pushTestImage(hub, "library/whole", "1", "oci-index-with-attestation");
  genericWhole = await pushTestImage(generic, "team/whole", "v1", "oci-index-with-attestation");
  hubProxy = await startFaultProxy(hub.url);
  genericProxy = await startFaultProxy(generic.url);
});
afterAll(async () => {
  await hubProxy?.stop();
  await genericProxy?.stop();
  await hub?.stop();
  await generic?.stop();
});
beforeEach(() => {
  hubProxy.setPlan([]);
  genericProxy.setPlan([]);
});

function hubChecker(timeouts?: { idleMs?: number; totalMs?: number }) {
  return new DockerHubImageChecker({
    registryUrl: hubProxy.url,
    authRealm: hub.tokenServer!.realm,
    authService: hub.tokenServer!.service,
    clientOptions: { useDockerConfig: false, env: {}, retry: { retries: 2, baseDelayMs: 10 }, ...(timeouts ? { timeouts } : {}) },
  });
}
function genericChecker(timeouts?: { idleMs?: number; totalMs?: number }) {
  return new RegistryImageChecker({
    useDockerConfig: false,
    env: {},
    credentials: { [genericProxy.host]: generic.credentials! },
    retry: { retries: 2, baseDelayMs: 10 },
    ...(timeouts ? { timeouts } : {}),
  });
}

const childHead =
  (digest: string) =>
  ({ method, path }: { method: string; path: string }) =>
    method === "HEAD" && path.endsWith(`/manifests/${digest}`);
const manifestGet = ({ method, path }: { method: string; path: string }) => method === "GET" && path.includes("/manifests/");

describe("DockerHubImageChecker", () => {
  it("an index whose arm64 child was deleted: null for linux/amd64+linux/arm64 (rebuild), found for linux/amd64", async () => {
    const c = hubChecker();
    expect(await c.imageExists("gone", "1", [...BOTH])).toBeNull();
    expect(await c.imageExists("gone", "1", ["linux/amd64"])).toBe("gone:1");
    expect(await c.imageExists("whole", "1", [...BOTH])).toBe("whole:1");
  });

  it("a child HEAD answering 503: throws RegistryError (could not tell), never found", async () => {
    hubProxy.setPlan({ faults: [], match: childHead(arm64Of(hubWhole)), then: { kind: "status", status: 503 } });
    const error = await hubChecker()
      .imageExists("whole", "1", [...BOTH])
      .catch((e: unknown) => e);
    expect(RegistryError.isInstance(error), String(error)).toBe(true);
  });

  it("a manifest body dripped past the 1 s deadline: throws RegistryTimeoutError, never null", async () => {
    hubProxy.setPlan({ faults: [], match: manifestGet, then: { kind: "drip", intervalMs: 50, chunkBytes: 1 } });
    const started = Date.now();
    const error = await hubChecker({ idleMs: 10_000, totalMs: 1_000 })
      .imageExists("whole", "1", [...BOTH])
      .catch((e: unknown) => e);
    expect(RegistryTimeoutError.isInstance(error), String(error)).toBe(true);
    expect((error as KilnError).hint).toContain("timeouts.totalMs");
    expect(Date.now() - started).toBeLessThan(3_000);
  });
});

describe("RegistryImageChecker", () => {
  it("a manifest list whose arm64 child was deleted: null for linux/amd64+linux/arm64, found for linux/amd64", async () => {
    const c = genericChecker();
    const repo = `${genericProxy.host}/team/gone`;
    expect(await c.imageExists(repo, "v1", [...BOTH])).toBeNull();
    expect(await c.imageExists(repo, "v1", ["linux/amd64"])).toBe(`${repo}:v1`);
    expect(await c.imageExists(`${genericProxy.host}/team/whole`, "v1", [...BOTH])).toBe(`${genericProxy.host}/team/whole:v1`);
  });

  it("a child HEAD answering 503: throws RegistryError (could not tell), never found", async () => {
    genericProxy.setPlan({ faults: [], match: childHead(arm64Of(genericWhole)), then: { kind: "status", status: 503 } });
    const error = await genericChecker()
      .imageExists(`${genericProxy.host}/team/whole`, "v1", [...BOTH])
      .catch((e: unknown) => e);
    expect(RegistryError.isInstance(error), String(error)).toBe(true);
  });

  it("a manifest body dripped past the 1 s deadline: throws RegistryTimeoutError, never null", async () => {
    genericProxy.setPlan({ faults: [], match: manifestGet, then: { kind: "drip", intervalMs: 50, chunkBytes: 1 } });
    const started = Date.now();
    const error = await genericChecker({ idleMs: 10_000, totalMs: 1_000 })
      .imageExists(`${genericProxy.host}/team/whole`, "v1", [...BOTH])
      .catch((e: unknown) => e);
    expect(RegistryTimeoutError.isInstance(error), String(error)).toBe(true);
    expect(Date.now() - started).toBeLessThan(3_000);
  });
});
