// The same example with no Docker Engine reachable (DOCKER_HOST points nowhere): Kiln picks the
// daemonless `oci` builder (installed next to @kiln/docker, preferred when it can build the image),
// pip on this machine resolves the wheels from the local index, and the image goes straight to the
// registry. The engine is used only by the test itself, to run what was pushed. Then the Docker
// builder, chosen explicitly, still builds the example (with the engine) on a fresh registry.
import { execFile } from "node:child_process";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, expect, it } from "vitest";
import { removeImages, runInImage } from "@kiln/test-utils";
import { HELLO_PACKAGE, startOfflineServices, type OfflineServices } from "../local/services.js";

const exampleDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
let services: OfflineServices | undefined;
const created: string[] = [];

/** `pnpm start` with the environment given (KILN_IMAGE_BUILDER as given, or unset). */
function start(env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  if (env.KILN_IMAGE_BUILDER === undefined) delete childEnv.KILN_IMAGE_BUILDER;
  return new Promise((done) => {
    execFile("pnpm", ["start"], { cwd: exampleDir, env: childEnv, timeout: 600_000 }, (error, stdout, stderr) =>
      done({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

afterEach(async () => {
  await removeImages(created.splice(0));
  await services?.stop();
  services = undefined;
});

it("builds and pushes with the oci builder while no Docker Engine is reachable; a second run finds it; the image runs", async () => {
  services = await startOfflineServices();
  const noEngine = { ...services.env, DOCKER_HOST: "unix:///nonexistent/docker.sock" };
  const first = await start(noEngine);
  expect(first.code, first.stderr).toBe(0);
  const uri = first.stdout.trim().split("\n").pop()!;
  created.push(uri);
  expect(uri).toMatch(new RegExp(`^${services.registryHost.replace(/[.]/g, "\\.")}/hello-python:[0-9a-f]{32}$`));
  expect(first.stderr).toMatch(/^built/m);
  expect(first.stderr).toContain("step pip install kiln-hello");
  expect(services.indexRequests.some((p) => p.startsWith("/files/kiln_hello-"))).toBe(true);

  const second = await start(noEngine);
  expect(second.code, second.stderr).toBe(0);
  expect(second.stdout.trim().split("\n").pop()).toBe(uri);
  expect(second.stderr).toMatch(/^check oci-registry: present/m);
  expect(second.stderr).toMatch(/^found/m);

  const output = await runInImage(uri, ["python3", "/app/hello.py"]);
  expect(output).toContain("hello from kiln from Python 3.11");
  expect(output).toContain(`${HELLO_PACKAGE.name} ${HELLO_PACKAGE.version}`);
}, 900_000);

it("the Docker builder, chosen explicitly, builds the same example with the engine", async () => {
  services = await startOfflineServices();
  const run = await start({ ...services.env, KILN_IMAGE_BUILDER: "docker" });
  expect(run.code, run.stderr).toBe(0);
  const uri = run.stdout.trim().split("\n").pop()!;
  created.push(uri);
  expect(run.stderr).toMatch(/^built/m);
  const output = await runInImage(uri, ["python3", "/app/hello.py"]);
  expect(output).toContain(`${HELLO_PACKAGE.name} ${HELLO_PACKAGE.version}`);
}, 900_000);
