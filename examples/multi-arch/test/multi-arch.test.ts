// `pnpm start` against a real local registry: both platforms are built and joined by an index under
// the printed URI, and the next run finds the image for both platforms.
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { removeImages, runExampleStart, startRegistry, type TestRegistry } from "@kiln/test-utils";

const exampleDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
let registry: TestRegistry;
const created: string[] = [];

const start = (extra: Record<string, string> = {}) =>
  runExampleStart(exampleDir, { KILN_IMAGE_REGISTRY: registry.host, KILN_MULTIARCH_BASE: "scratch", ...extra });

beforeAll(async () => {
  registry = await startRegistry();
});
afterAll(async () => {
  await removeImages(created.flatMap((uri) => [uri, `${uri}-linux-amd64`, `${uri}-linux-arm64`]));
  await registry?.stop();
});

it("pushes an index with both platforms, then finds it", async () => {
  const dry = await start({ KILN_DRY_RUN: "1" });
  expect(dry.stderr).toMatch(/^would-build$/m);

  const built = await start();
  created.push(built.uri);
  expect(built.uri).toBe(dry.uri);
  expect(built.stderr).toMatch(/^built$/m);
  const [repository, tag] = built.uri.slice(registry.host.length + 1).split(":");
  const res = await fetch(`${registry.url}/v2/${repository}/manifests/${tag}`, {
    headers: { accept: "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json" },
  });
  expect(res.status).toBe(200);
  const index = (await res.json()) as { manifests: Array<{ platform?: { os: string; architecture: string } }> };
  const platforms = index.manifests.map((m) => `${m.platform?.os}/${m.platform?.architecture}`);
  expect(platforms).toEqual(expect.arrayContaining(["linux/amd64", "linux/arm64"]));

  const again = await start();
  expect(again.uri).toBe(built.uri);
  expect(again.stderr).toMatch(/^found$/m);
});
