// `pnpm start` against a real local registry with a locally made node base image: the service is
// compiled, installed from its lockfile and pushed under the printed URI; the image runs it; a
// change to the service's code changes the tag; an unchanged project is found, not rebuilt.
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { removeImages, runExampleStart, runInImage, startRegistry, type TestRegistry } from "@kiln/test-utils";
import { ensureNodeBaseImage } from "../local/node-base.js";

const exampleDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
let registry: TestRegistry;
let base: string;
const created: string[] = [];

const start = () => runExampleStart(exampleDir, { KILN_IMAGE_REGISTRY: registry.host, KILN_NODE_BASE: base });

beforeAll(async () => {
  base = await ensureNodeBaseImage();
  registry = await startRegistry();
});
afterAll(async () => {
  await removeImages(created);
  await registry?.stop();
});

it("builds the service image from its lockfile, pushes it, runs it, then finds it", async () => {
  const built = await start();
  created.push(built.uri);
  expect(built.uri).toMatch(new RegExp(`^${registry.host.replace(/\./g, "\\.")}/node-app:[0-9a-f]{32}$`));
  expect(built.stderr).toMatch(/^built$/m);
  const [repository, tag] = built.uri.slice(registry.host.length + 1).split(":");
  const head = await fetch(`${registry.url}/v2/${repository}/manifests/${tag}`, {
    method: "HEAD",
    headers: {
      accept: "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json",
    },
  });
  expect(head.status).toBe(200);

  const output = JSON.parse(await runInImage(built.uri, ["node", "/app/dist/server.js", "--once"])) as Record<string, string>;
  expect(output).toEqual({ status: "ok", service: "node-app", node: expect.stringMatching(/^\d+\.\d+\.\d+$/) });
  // .dockerignore kept the TypeScript sources out of the image.
  expect(await runInImage(built.uri, ["ls", "/app"])).not.toContain("src");

  const again = await start();
  expect(again.uri).toBe(built.uri);
  expect(again.stderr).toMatch(/^found$/m);
});
