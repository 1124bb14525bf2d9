// `node --test scripts/check-plugins.test.mjs` (run by `pnpm lint`): check-plugins.mjs passes a complete
// plugin and fails one without a README, without a `kiln` field, or without a conformance run.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { checkPlugins } from "./check-plugins.mjs";

const script = join(dirname(fileURLToPath(import.meta.url)), "check-plugins.mjs");
const roots = [];
after(() => {
  for (const root of roots) rmSync(root, { recursive: true, force: true });
});

/** A workspace with core's apiVersion and one plugin, `@acme/kiln-thing`; `omit` leaves a part out. */
function workspace(omit = "") {
  const root = mkdtempSync(join(tmpdir(), "check-plugins-"));
  roots.push(root);
  mkdirSync(join(root, "packages/core/src"), { recursive: true });
  writeFileSync(join(root, "packages/core/src/builder.ts"), "export const KILN_API_VERSION = 1;\n");
  writeFileSync(join(root, "packages/core/package.json"), JSON.stringify({ name: "@kiln/core" }));
  const dir = join(root, "packages/thing");
  mkdirSync(join(dir, "src"), { recursive: true });
  mkdirSync(join(dir, "test"), { recursive: true });
  const pkg = {
    name: "@acme/kiln-thing",
    files: ["dist", "README.md"],
    peerDependencies: { "@kiln/core": "^1.0.0" },
    kiln: { apiVersion: 1, imageBuilders: { thing: "./dist/index.js#ThingImageBuilder" }, imageCheckers: { thing: "./dist/index.js#ThingImageChecker" } },
  };
  if (omit === "kiln") delete pkg.kiln;
  writeFileSync(join(dir, "package.json"), JSON.stringify(pkg, null, 2));
  if (omit !== "readme") writeFileSync(join(dir, "README.md"), "# @acme/kiln-thing\n");
  writeFileSync(join(dir, "src/index.ts"), 'export { ThingImageBuilder } from "./builder.js";\nexport { ThingImageChecker } from "./checker.js";\n');
  const suites = [
    'import { describeBuilderConformance, describeCheckerConformance } from "@kiln/core/testing";',
    'describeBuilderConformance("ThingImageBuilder", async () => ({}));',
    omit === "checker-suite" ? "" : 'describeCheckerConformance("ThingImageChecker (local)", async () => ({}));',
  ];
  writeFileSync(join(dir, "test/conformance.test.ts"), suites.join("\n"));
  return root;
}

test("a plugin with a README, a kiln field and both conformance runs passes", () => {
  const { checked, problems } = checkPlugins(workspace());
  assert.deepEqual(checked, ["@acme/kiln-thing"]);
  assert.deepEqual(problems, []);
});

test("a plugin without a README fails, and the command exits 1 naming it", () => {
  const root = workspace("readme");
  assert.match(checkPlugins(root).problems.join("\n"), /@acme\/kiln-thing .*has no README\.md/);
  const run = spawnSync(process.execPath, [script, "--root", root], { encoding: "utf8" });
  assert.equal(run.status, 1);
  assert.match(run.stderr, /has no README\.md/);
});

test("a plugin (it peer-depends on @kiln/core) without a kiln field fails", () => {
  assert.match(checkPlugins(workspace("kiln")).problems.join("\n"), /has no "kiln" field/);
});

test("a checker no conformance suite runs fails", () => {
  const { problems } = checkPlugins(workspace("checker-suite"));
  assert.equal(problems.length, 1);
  assert.match(problems[0], /ThingImageChecker \(imageCheckers\.thing\) is not run through describeCheckerConformance/);
});

test("the repository's own plugins pass", () => {
  const out = execFileSync(process.execPath, [script], { encoding: "utf8" });
  assert.match(out, /published plugins have a README, a kiln field and conformance runs/);
});
