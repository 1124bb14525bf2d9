/**
 * RegistryClient and checkImage against the real registry (distribution 2.8, started here) in its
 * three auth modes, with images pushed in every shape straight over the registry API.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthError } from "../src/errors.js";
import type { BuildEvent } from "../src/events.js";
import { checkImage } from "../src/registry/check.js";
import { RegistryClient } from "../src/registry/client.js";
import { pushTestImage, startRegistry, type PushedTestImage, type TestRegistry } from "../../test-utils/src/registry.js";

const SHAPES = ["docker-v2", "oci", "oci-index-with-attestation", "docker-manifest-list", "oci-index-missing-platform"] as const;
const BOTH = ["linux/amd64", "linux/arm64"];

for (const mode of ["none", "basic", "bearer"] as const) {
  describe(`registry with auth=${mode}`, () => {
    let registry: TestRegistry;
    const pushed = new Map<string, PushedTestImage>();
    const events: BuildEvent[] = [];
    let client: RegistryClient;

    beforeAll(async () => {
      registry = await startRegistry({ auth: mode });
      for (const shape of SHAPES) pushed.set(shape, await pushTestImage(registry, `kiln/${shape}`, "v1", shape));
      client = new RegistryClient({
        useDockerConfig: false,
        credentials: registry.credentials ? { [registry.host]: registry.credentials } : {},
        onEvent: (e) => events.push(e),
      });
    });
    afterAll(async () => {
      await registry?.stop();
    });

    it("HEADs a manifest and reports its digest and media type", async () => {
      const image = pushed.get("oci-index-with-attestation")!;
      const head = await client.headManifest(`${registry.host}/kiln/oci-index-with-attestation:v1`);
      expect(head).toMatchObject({ digest: image.digest, mediaType: image.mediaType });
    });

    for (const shape of SHAPES) {
      it(`reads the platforms of a ${shape} image and answers for each request`, async () => {
        const image = pushed.get(shape)!;
        const ref = `${registry.host}/kiln/${shape}:v1`;
        const platforms = await client.platforms(ref);
        expect(platforms?.digest).toBe(image.digest);
        expect([...platforms!.platforms].sort()).toEqual([...image.platforms].sort());

        const amd = await checkImage(ref, { platforms: ["linux/amd64"], client });
        expect(amd).toMatchObject({ present: true, exists: true, digest: image.digest, missing: [] });

        const both = await checkImage(ref, { platforms: BOTH, client });
        const expectedMissing = BOTH.filter((p) => !image.platforms.includes(p));
        expect(both.present).toBe(expectedMissing.length === 0);
        expect(both.missing).toEqual(expectedMissing);
        expect(both.exists).toBe(true);
      });
    }

    it("answers absent for an unknown tag and an unknown repository", async () => {
      expect(await client.headManifest(`${registry.host}/kiln/oci:nope`)).toBeNull();
      expect(await client.getManifest(`${registry.host}/kiln/does-not-exist:v1`)).toBeNull();
      const result = await checkImage(`${registry.host}/kiln/does-not-exist:v1`, { platforms: BOTH, client });
      expect(result).toMatchObject({ present: false, exists: false, missing: BOTH });
    });

    it("puts an index by tag, returns its digest, and checks blobs", async () => {
      const amd = await pushTestImage(registry, "kiln/assembled", "amd", "oci", { platforms: ["linux/amd64"] });
      const arm = await pushTestImage(registry, "kiln/assembled", "arm", "oci", { platforms: ["linux/arm64"] });
      const amdManifest = await client.getManifest(`${registry.host}/kiln/assembled@${amd.digest}`);
      const index = {
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: [
          { mediaType: amd.mediaType, digest: amd.digest, size: amdManifest!.size, platform: { os: "linux", architecture: "amd64" } },
          {
            mediaType: arm.mediaType,
            digest: arm.digest,
            size: (await client.getManifest(`${registry.host}/kiln/assembled:arm`))!.size,
            platform: { os: "linux", architecture: "arm64", variant: "v8" },
          },
        ],
      };
      const digest = await client.putManifest(`${registry.host}/kiln/assembled:multi`, JSON.stringify(index), index.mediaType);
      const head = await client.headManifest(`${registry.host}/kiln/assembled:multi`);
      expect(head?.digest).toBe(digest);
      expect(await checkImage(`${registry.host}/kiln/assembled:multi`, { platforms: BOTH, client })).toMatchObject({ present: true, digest });

      const config = (amdManifest!.manifest.config as { digest: string }).digest;
      expect(await client.blobExists(`${registry.host}/kiln/assembled`, config)).toBe(true);
      expect(await client.blobExists(`${registry.host}/kiln/assembled`, `sha256:${"0".repeat(64)}`)).toBe(false);
      expect(await client.mountBlob(`${registry.host}/kiln/mounted`, config, "kiln/assembled")).toBe(true);
      expect(await client.blobExists(`${registry.host}/kiln/mounted`, config)).toBe(true);
    });

    if (mode !== "none") {
      it("without credentials it cannot tell: AuthError naming the registry, with a hint", async () => {
        const anonymous = new RegistryClient({ useDockerConfig: false });
        const error = await anonymous.headManifest(`${registry.host}/kiln/oci:v1`).catch((e: unknown) => e);
        expect(AuthError.isInstance(error)).toBe(true);
        expect((error as AuthError).message).toContain(registry.host);
        expect((error as AuthError).hint).toMatch(/docker login/);
      });

      it("with a wrong password it is an AuthError that does not contain the password", async () => {
        const wrong = "definitely-wrong-password-123";
        const bad = new RegistryClient({ useDockerConfig: false, credentials: { [registry.host]: { username: "kiln", password: wrong } } });
        const error = await bad.headManifest(`${registry.host}/kiln/oci:v1`).catch((e: unknown) => e);
        expect(AuthError.isInstance(error)).toBe(true);
        expect(JSON.stringify({ m: (error as AuthError).message, h: (error as AuthError).hint, d: (error as AuthError).details })).not.toContain(wrong);
      });
    }

    if (mode === "bearer") {
      it("caches tokens until expiry and sends them up front", async () => {
        const fresh = new RegistryClient({ useDockerConfig: false, credentials: { [registry.host]: registry.credentials! } });
        const before = registry.tokenServer!.requests.length;
        for (let i = 0; i < 3; i++) await fresh.headManifest(`${registry.host}/kiln/oci:v1`);
        expect(registry.tokenServer!.requests.length - before).toBe(1);
        expect(registry.tokenServer!.requests.at(-1)).toMatchObject({ grant: "basic", account: "kiln", scopes: ["repository:kiln/oci:pull"] });
      });
    }

    it("never puts a credential in an event", () => {
      const text = JSON.stringify(events);
      if (registry.credentials) {
        expect(text).not.toContain(registry.credentials.password);
        expect(text).not.toContain(Buffer.from(`kiln:${registry.credentials.password}`).toString("base64"));
      }
    });
  });
}
