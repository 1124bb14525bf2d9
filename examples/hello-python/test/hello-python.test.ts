// Runs `pnpm start` against a real local registry and package index (with a locally made base
// image) and checks the outcome: the URI printed is in the registry, pip installed from the local
// index, and the image runs. A second run finds the image and builds nothing.
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { removeImages, runExampleStart, runInImage } from "@kiln/test-utils";
import { HELLO_PACKAGE, startOfflineServices, type OfflineServices } from "../local/services.js";

const exampleDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
let services: OfflineServices;
const created: string[] = [];

const start = () => runExampleStart(exampleDir, services.env, 600_000);

async function manifestStatus(uri: string): Promise<number> {
  const [repository, tag] = uri.slice(services.registryHost.length + 1).split(":");
  const res = await fetch(`${services.registryUrl}/v2/${repository}/manifests/${tag}`, {
    method: "HEAD",
    headers: {
      accept:
        "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json",
    },
  });
  return res.status;
}

beforeAll(async () => {
  services = await startOfflineServices();
});
afterAll(async () => {
  await removeImages(created);
  await services?.stop();
});

it("builds and pushes the image, then finds it instead of rebuilding", async () => {
  const first = await start();
  const uri = first.stdout.trim().split("\n").pop()!;
  created.push(uri);
  expect(uri).toMatch(new RegExp(`^${services.registryHost.replace(/[.]/g, "\\.")}/hello-python:[0-9a-f]{32}$`));
  expect(first.stderr).toMatch(/^built/m);
  expect(await manifestStatus(uri)).toBe(200);
  // pip fetched the wheel from the local index.
  expect(services.indexRequests.some((p) => p.startsWith("/files/kiln_hello-"))).toBe(true);

  const output = await runInImage(uri, ["python3", "/app/hello.py"]);
  expect(output).toContain("hello from kiln from Python 3.11");
  expect(output).toContain(`${HELLO_PACKAGE.name} ${HELLO_PACKAGE.version}`);

  const second = await start();
  expect(second.stdout.trim().split("\n").pop()).toBe(uri);
  expect(second.stderr).toMatch(/^found/m);
});
