// `@kiln/core/plugin` holds the plugin-author helpers; the root keeps the application API and, for one
// release, re-exports the helpers (deprecated). Each name is written in one export list only.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import * as root from "../src/index.js";
import * as plugin from "../src/plugin.js";

const srcDir = join(dirname(fileURLToPath(import.meta.url)), "..", "src");
const packageJson = JSON.parse(readFileSync(join(srcDir, "..", "package.json"), "utf8")) as {
  exports: Record<string, { types: string; default: string } | string>;
};

/** Names listed in `export { … } from` / `export type { … } from` statements of a source file. */
function listedNames(file: string): string[] {
  const text = readFileSync(join(srcDir, file), "utf8");
  const names: string[] = [];
  for (const [, body] of text.matchAll(/export\s+(?:type\s+)?\{([^}]*)\}\s*from\s*"[^"]+"/g)) {
    for (const item of body!.split(",")) {
      const name = item
        .trim()
        .replace(/^type\s+/, "")
        .split(/\s+as\s+/)
        .pop()!
        .trim();
      if (name) names.push(name);
    }
  }
  return names;
}

describe("@kiln/core/plugin", () => {
  it("exports the plugin-author helpers, and the registry client through its one list", () => {
    for (const name of [
      "createBuildContext",
      "renderDockerfile",
      "emit",
      "RegistryClient",
      "checkImage",
      "uploadBlob",
      "SharedWork",
      "openPath",
      "toNamedChecker",
    ]) {
      expect(plugin, name).toHaveProperty(name);
    }
    expect(listedNames("plugin.ts")).not.toContain("RegistryClient");
    expect(listedNames("registry/index.ts")).toContain("RegistryClient");
  });

  it("keeps every moved name available from the root, as the same value (deprecated for one release)", () => {
    const moved = Object.keys(plugin);
    expect(moved.length).toBeGreaterThan(0);
    for (const name of moved) expect((root as Record<string, unknown>)[name], name).toBe((plugin as Record<string, unknown>)[name]);
  });

  it("writes each name in one export list only", () => {
    const lists = { "index.ts": listedNames("index.ts"), "plugin.ts": listedNames("plugin.ts"), "registry/index.ts": listedNames("registry/index.ts") };
    const seen = new Map<string, string>();
    const twice: string[] = [];
    for (const [file, names] of Object.entries(lists)) {
      for (const name of names) {
        const first = seen.get(name);
        if (first !== undefined) twice.push(`${name} (${first} and ${file})`);
        seen.set(name, file);
      }
    }
    expect(twice).toEqual([]);
  });

  it("leaves the application API in the root list: the engine, the spec, errors, the plugin contract", () => {
    const rootList = listedNames("index.ts");
    for (const name of ["build", "init", "Image", "ImageBuildEngine", "KilnError", "CancelledError", "ImageBuilder", "ImageChecker", "computeTag"]) {
      expect(rootList, name).toContain(name);
    }
    for (const name of Object.keys(plugin)) expect(rootList, name).not.toContain(name);
  });

  it("is a subpath export with its own types", () => {
    expect(packageJson.exports["./plugin"]).toEqual({ types: "./dist/plugin.d.ts", default: "./dist/plugin.js" });
  });
});
