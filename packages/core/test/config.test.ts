/** loadConfig: `imageRegistry` follows the same grammar (and Docker Hub normalisation) as an Image's registry. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { ConfigError } from "../src/errors.js";
import { validateRegistry } from "../src/validate.js";

let project: string;
beforeEach(() => {
  project = mkdtempSync(join(tmpdir(), "kiln-config-"));
});
afterEach(() => rmSync(project, { recursive: true, force: true }));

const withRegistry = (imageRegistry: unknown) => {
  writeFileSync(join(project, "kiln.config.json"), JSON.stringify({ imageRegistry }));
  return loadConfig(project);
};

describe("imageRegistry", () => {
  it.each(["ghcr.io/acme", "localhost:5000", "[::1]:5000", "registry.example.com:443/team/sub", "acme"])("accepts %s as validateRegistry does", (registry) => {
    expect(withRegistry(registry).imageRegistry).toBe(validateRegistry("registry", registry));
  });

  it("a host-less namespace is Docker Hub's", () => {
    expect(withRegistry("acme").imageRegistry).toBe("docker.io/acme");
  });

  it.each(["-foo", "https://ghcr.io", "ghcr.io/Acme", "ghcr.io//x", "", 5])("rejects %j with a ConfigError naming file and key", (registry) => {
    let caught: unknown;
    try {
      withRegistry(registry);
    } catch (error) {
      caught = error;
    }
    expect(ConfigError.isInstance(caught)).toBe(true);
    const error = caught as ConfigError;
    expect(error.message).toContain("imageRegistry");
    expect(error.message).toContain(join(project, "kiln.config.json"));
    expect(error.message).not.toMatch(/Invalid imageRegistry .*Invalid imageRegistry/);
    expect(error.hint).toBeTruthy();
    expect(error.details).toMatchObject({ key: "imageRegistry" });
  });
});

describe("builderOptions", () => {
  const withBuilderOptions = (builderOptions: unknown) => {
    writeFileSync(join(project, "kiln.config.json"), JSON.stringify({ builderOptions }));
    return loadConfig(project);
  };

  it("keeps each builder's section as written, for that builder to validate; names the file it came from", () => {
    const section = { endpoints: ["tcp://buildkitd:1234"], cacheFrom: true, tls: { ca: "certs/ca.pem" } };
    const loaded = withBuilderOptions({ buildkit: section, docker: {} });
    expect(loaded.builderOptions).toEqual({ buildkit: section, docker: {} });
    expect(loaded.sources.builderOptions).toBe(join(project, "kiln.config.json"));
  });

  it("package.json's kiln field may carry it too; kiln.config.json wins", () => {
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "p", kiln: { builderOptions: { buildkit: { noCache: true } } } }));
    expect(loadConfig(project).builderOptions).toEqual({ buildkit: { noCache: true } });
    expect(withBuilderOptions({ buildkit: { pull: true } }).builderOptions).toEqual({ buildkit: { pull: true } });
  });

  it.each([[["buildkit"]], ["buildkit"], [{ buildkit: "tcp://x:1" }], [{ buildkit: null }], [{ "bad name!": {} }]])(
    "rejects %j with a ConfigError naming file and key",
    (value) => {
      let caught: unknown;
      try {
        withBuilderOptions(value);
      } catch (error) {
        caught = error;
      }
      expect(ConfigError.isInstance(caught)).toBe(true);
      expect((caught as ConfigError).message).toContain(join(project, "kiln.config.json"));
      expect((caught as ConfigError).details).toMatchObject({ key: "builderOptions" });
    },
  );
});
