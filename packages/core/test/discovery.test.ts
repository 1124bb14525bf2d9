import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KILN_API_VERSION } from "../src/builder.js";
import { toNamedChecker } from "../src/checkers.js";
import { discoverPlugins, loadCredentialProvider, loadImageBuilder, loadImageChecker, resolvePackageDir, type PluginDiscovery } from "../src/discovery.js";
import { PluginLoadError } from "../src/errors.js";
import { makeProject, type Layout, type TempProject } from "./fixtures/plugins/projects.js";

const fakeImage = { uri: "localhost:5000/app:abc" } as never;

describe.each<Layout>(["pnpm-workspace", "npm", "npm-workspace"])("discovery in a %s project", (layout) => {
  let project: TempProject;
  let discovery: PluginDiscovery;
  beforeAll(() => {
    project = makeProject(layout, { "kiln-fixture-esm": "esm-plugin", "kiln-fixture-plain-lib": "plain-lib" }, { "kiln-fixture-cjs": "cjs-plugin" });
    discovery = discoverPlugins(project.projectDir);
  });
  afterAll(() => project.cleanup());

  it("finds the providers declared by listed dependencies (and dev dependencies) only", () => {
    expect(discovery.imageBuilders.map((b) => `${b.name}@${b.packageName}`).sort()).toEqual([
      "cjs_builder@kiln-fixture-cjs",
      "cjs_default@kiln-fixture-cjs",
      "esm_builder@kiln-fixture-esm",
    ]);
    expect(discovery.imageCheckers.map((c) => c.name).sort()).toEqual(["cjs_checker", "esm_checker", "esm_instance_checker"]);
    expect(discovery.credentialProviders.map((c) => c.name)).toEqual(["esm_creds"]);
    expect(discovery.packages.map((p) => p.name).sort()).toEqual(["kiln-fixture-cjs", "kiln-fixture-esm"]);
    expect(discovery.problems).toEqual([]);
    expect(discovery.missing).toEqual([]);
  });

  it("resolves a package whose exports hide package.json", () => {
    const dir = resolvePackageDir("kiln-fixture-esm", project.projectDir)!;
    expect(JSON.parse(readFileSync(join(dir, "package.json"), "utf8")).name).toBe("kiln-fixture-esm");
  });

  it("loads an ESM builder class and its static-imageExists checker lazily", async () => {
    const builder = await loadImageBuilder(discovery, "esm_builder");
    const result = await builder.buildImage(fakeImage, { dryRun: true });
    expect(result).toEqual({ uri: "localhost:5000/app:abc", remoteRun: { plugin: "esm", dryRun: true } });
    const checker = toNamedChecker(await loadImageChecker(discovery, "esm_checker"));
    expect(checker.name).toBe("EsmChecker");
    expect(await checker.imageExists("r/app", "present")).toBe("r/app:present");
    expect(await checker.imageExists("r/app", "other")).toBeNull();
    const instance = toNamedChecker(await loadImageChecker(discovery, "esm_instance_checker"));
    expect(await instance.imageExists("r/app", "present")).toBe("r/app:present");
  });

  it("loads CommonJS plugins: a named class, a default instance and an instance-method checker", async () => {
    const builder = await loadImageBuilder(discovery, "cjs_builder");
    expect((await builder.buildImage(fakeImage, {})).remoteRun).toEqual({ plugin: "cjs" });
    const fallback = await loadImageBuilder(discovery, "cjs_default");
    expect((await fallback.buildImage(fakeImage, {})).remoteRun).toEqual({ plugin: "cjs-default" });
    const checker = await loadImageChecker(discovery, "cjs_checker");
    expect(await toNamedChecker(checker).imageExists("r/x", "present")).toBe("r/x:present");
  });

  it("loads a credential provider in the registry client's shape", async () => {
    const provider = await loadCredentialProvider(discovery, "esm_creds");
    expect(provider.name).toBe("esm_creds");
    expect(provider.matches("esm.example.test")).toBe(true);
  });
});

describe("discovery errors", () => {
  let project: TempProject;
  let discovery: PluginDiscovery;
  beforeAll(() => {
    project = makeProject("npm", {
      "kiln-fixture-esm": "esm-plugin",
      "kiln-fixture-missing-file": "missing-file-plugin",
      "kiln-fixture-missing-export": "missing-export-plugin",
      "kiln-fixture-wrong-shape": "wrong-shape-plugin",
      "kiln-fixture-duplicate": "duplicate-plugin",
      "kiln-fixture-future": "future-plugin",
    });
    discovery = discoverPlugins(project.projectDir);
  });
  afterAll(() => project.cleanup());

  const failure = async (work: () => Promise<unknown>) => {
    try {
      await work();
    } catch (error) {
      expect(PluginLoadError.isInstance(error)).toBe(true);
      return error as PluginLoadError;
    }
    throw new Error("expected a PluginLoadError");
  };

  it("missing entry file: names the file and tells to build/reinstall", async () => {
    const error = await failure(() => loadImageBuilder(discovery, "ghost_builder"));
    expect(error.message).toContain("./lib/not-built.js#GhostBuilder");
    expect(error.message).toContain("does not exist");
    expect(error.hint).toContain("kiln-fixture-missing-file");
  });

  it("missing export: lists the exports that exist", async () => {
    const error = await failure(() => loadImageBuilder(discovery, "typo_builder"));
    expect(error.message).toContain('"TypoBuilder"');
    expect(error.message).toContain("TypedBuilder, helper");
  });

  it("wrong shape: a builder without buildImage, a checker without imageExists", async () => {
    const builderError = await failure(() => loadImageBuilder(discovery, "shapeless_builder"));
    expect(builderError.message).toMatch(/wrong shape: expected an ImageBuilder.*got class\/function NotABuilder/);
    const checkerError = await failure(() => loadImageChecker(discovery, "shapeless_checker"));
    expect(checkerError.message).toMatch(/wrong shape: expected an ImageChecker.*got object/);
  });

  it("duplicate provider name: names both packages", async () => {
    const error = await failure(() => loadImageBuilder(discovery, "esm_builder"));
    expect(error.message).toContain("kiln-fixture-duplicate");
    expect(error.message).toContain("kiln-fixture-esm");
    expect(discovery.problems.some((p) => p.name === "esm_builder")).toBe(true);
  });

  it("incompatible apiVersion: says which version each side speaks", async () => {
    const error = await failure(() => loadImageBuilder(discovery, "future_builder"));
    expect(error.message).toContain("kiln-fixture-future@9.0.0");
    expect(error.message).toContain(`apiVersion ${KILN_API_VERSION}`);
    expect(error.hint).toContain("Upgrade @kiln/core");
  });

  it("listed but not installed: names the dependency and the install command", async () => {
    const pkgFile = join(project.projectDir, "package.json");
    const pkg = JSON.parse(readFileSync(pkgFile, "utf8"));
    pkg.devDependencies = { "kiln-fixture-not-installed": "^1.0.0" };
    writeFileSync(pkgFile, JSON.stringify(pkg));
    const again = discoverPlugins(project.projectDir);
    expect(again.missing).toEqual(["kiln-fixture-not-installed"]);
    const error = await failure(() => loadImageBuilder(again, "not_installed_builder"));
    expect(error.message).toContain("listed but not installed: kiln-fixture-not-installed");
    expect(error.hint).toMatch(/install/);
  });

  it("never imports packages without a kiln field", () => {
    // plain-lib throws when imported; discovery of a project listing it must not run it.
    const plain = makeProject("npm", { "kiln-fixture-plain-lib": "plain-lib" });
    try {
      const found = discoverPlugins(plain.projectDir);
      expect(found.packages).toEqual([]);
      expect(found.imageBuilders).toEqual([]);
    } finally {
      plain.cleanup();
    }
  });
});
