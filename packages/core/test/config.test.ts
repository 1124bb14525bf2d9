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
