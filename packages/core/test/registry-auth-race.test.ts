/**
 * Concurrent first requests to a registry behind htpasswd Basic auth (what `kiln plan` and
 * promotion do: several checks of one registry at once). Each goes out anonymously before the
 * scheme is known; the first 401 teaches the client "basic", and every other anonymous request
 * refused meanwhile must be retried with the credentials — not reported as "credentials denied".
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
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
