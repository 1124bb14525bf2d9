// `pnpm start` against a real local registry, with a locally made busybox base: a dry run pushes
// nothing, a build pushes the URI it prints, the image runs, and the next run finds it.
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ensureBusyboxImage, removeImages, runExampleStart, runInImage, startRegistry, type TestRegistry } from "@kiln/test-utils";

const exampleDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
let registry: TestRegistry;
let base: string;
const created: string[] = [];

const start = (extra: Record<string, string> = {}) => runExampleStart(exampleDir, { KILN_IMAGE_REGISTRY: registry.host, KILN_BUSYBOX_BASE: base, ...extra });

async function inRegistry(uri: string): Promise<boolean> {
  const [repository, tag] = uri.slice(registry.host.length + 1).split(":");
  const res = await fetch(`${registry.url}/v2/${repository}/manifests/${tag}`, {
    method: "HEAD",
    headers: {
      accept:
        "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json",
    },
  });
  return res.status === 200;
}

beforeAll(async () => {
  base = await ensureBusyboxImage();
  registry = await startRegistry();
});
afterAll(async () => {
  await removeImages(created);
  await registry?.stop();
});

it("dry run prints the URI and pushes nothing; a build pushes it; the next run finds it", async () => {
  const dry = await start({ KILN_DRY_RUN: "1" });
  expect(dry.uri).toMatch(new RegExp(`^${registry.host.replace(/\./g, "\\.")}/dockerfile-example:[0-9a-f]{32}$`));
  expect(dry.stderr).toMatch(/^would-build$/m);
  expect(await inRegistry(dry.uri)).toBe(false);

  const built = await start();
  created.push(built.uri);
  expect(built.uri).toBe(dry.uri);
  expect(built.stderr).toMatch(/^built$/m);
  expect(await inRegistry(built.uri)).toBe(true);
  expect(await runInImage(built.uri, ["serve"])).toBe("This image was built from a Dockerfile by Kiln.\nbuilt by kiln\n");

  const again = await start();
  expect(again.uri).toBe(built.uri);
  expect(again.stderr).toMatch(/^found$/m);
});
