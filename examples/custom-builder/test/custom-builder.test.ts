// Runs `pnpm start` as a user would and checks what the plugin builder did: both images land in its
// catalogue, and a second run finds them through the plugin's checker instead of rebuilding.
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";

const exampleDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
let store: string;

function start(): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const env = { ...process.env, KILN_MY_BUILDER_STORE: store, KILN_IMAGE_REGISTRY: "localhost:5000/examples" };
    delete env.KILN_IMAGE_BUILDER;
    execFile("pnpm", ["start"], { cwd: exampleDir, env }, (error, stdout, stderr) =>
      error ? reject(new Error(`pnpm start failed: ${stderr || error.message}`)) : resolvePromise(stdout),
    );
  });
}

beforeAll(async () => {
  store = await mkdtemp(join(tmpdir(), "kiln-example-custom-"));
});
afterAll(async () => {
  await rm(store, { recursive: true, force: true });
});

it("builds both images with my_builder, then finds them on the next run", async () => {
  const out = await start();
  const built = [...out.matchAll(/^(analytics|greeter): (\w+) (\S+)$/gm)].map((m) => ({ name: m[1], outcome: m[2], uri: m[3]! }));
  expect(built.map((b) => [b.name, b.outcome])).toEqual([
    ["analytics", "built"],
    ["greeter", "built"],
  ]);
  for (const b of built) expect(b.uri).toMatch(new RegExp(`^localhost:5000/examples/${b.name}:[0-9a-f]{32}$`));

  // What the template builder recorded is what was printed.
  const records = await Promise.all(
    (await readdir(join(store, "images"))).map(async (f) => JSON.parse(await readFile(join(store, "images", f), "utf8")) as { uri: string }),
  );
  expect(records.map((r) => r.uri).sort()).toEqual(built.map((b) => b.uri).sort());

  const again = await start();
  expect([...again.matchAll(/^(\w+): (\w+) (\S+)$/gm)].map((m) => [m[1], m[2], m[3]])).toEqual(built.map((b) => [b.name, "found", b.uri]));
});
