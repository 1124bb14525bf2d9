import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_IGNORE_PATTERNS, IgnoreMatcher } from "../src/dockerignore.js";
import { compareUtf8, NameRules, walkDirectory, type WalkEntry } from "../src/walk.js";

let root: string;
let cases = 0;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "kiln-walk-"));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

// A pattern that matches nothing in these trees (no name contains "#") and is not of the
// `**/<name glob>` form: appending it forces the walk onto moby's general matcher with the same result.
const GENERAL = "#never#/#never#";

const listing = (entries: WalkEntry[]) => entries.map((e) => `${e.type} ${e.path} ${e.contextPath} ${e.size} ${e.executable}`);

function bothWays(dir: string, patterns: readonly string[], forceInclude: string[] = []) {
  const fast = walkDirectory(dir, patterns, { forceInclude, contextDir: "kiln-layers/0" });
  const general = walkDirectory(dir, [...patterns, GENERAL], { forceInclude, contextDir: "kiln-layers/0" });
  return { fast: listing(fast), general: listing(general), paths: fast.map((e) => e.path) };
}

function write(dir: string, files: string[]): void {
  for (const file of files) {
    mkdirSync(join(dir, file, ".."), { recursive: true });
    writeFileSync(join(dir, file), file);
  }
}

describe("name-only ignore rules (the walk's fast path)", () => {
  it("applies to the defaults and to `**/<glob>` lists only", () => {
    expect(NameRules.of(new IgnoreMatcher(DEFAULT_IGNORE_PATTERNS))).toBeDefined();
    expect(NameRules.of(new IgnoreMatcher(["**/*.log", "**/tmp?", "**/a*b"]))).toBeDefined();
    for (const list of [["build"], ["**/a/b"], ["**/x", "!**/x/keep"], ["**/[ab]"], ["**/a\\*"], ["**/**/x"], ["**"], [GENERAL]]) {
      expect(NameRules.of(new IgnoreMatcher(list)), list.join(" ")).toBeUndefined();
    }
    const rules = NameRules.of(new IgnoreMatcher(DEFAULT_IGNORE_PATTERNS))!;
    expect(["node_modules", ".git", "__pycache__", ".venv", "x.pyc", ".pyc"].filter((n) => rules.excludes(n))).toHaveLength(6);
    expect(["node_modules2", "git", "x.pyc.txt", "pyc", ".venv-old"].some((n) => rules.excludes(n))).toBe(false);
  });

  it("lists exactly what moby's general matcher lists, sorted bytewise, on a tree with every hard case", () => {
    const dir = join(root, "fixed");
    write(dir, [
      "app/main.py",
      "app/__pycache__/main.cpython-311.pyc",
      "app/util.pyc",
      "app.py",
      "app-extra/x",
      "app.d/y",
      "a b/c",
      "node_modules/left-pad/index.js",
      "node_modules/package.json",
      "web/node_modules/react/index.js",
      "web/package.json",
      ".git/HEAD",
      "sub/.git",
      ".venv/bin/python",
      "é/naïve.txt",
      "\u{1F600}/smile",
      "\uE000/private",
      "keep.pyc.txt",
    ]);
    symlinkSync("app/main.py", join(dir, "link"));
    const { fast, general, paths } = bothWays(dir, DEFAULT_IGNORE_PATTERNS);
    expect(fast).toEqual(general);
    expect(paths).toEqual([...paths].sort(compareUtf8));
    // Bytewise order puts "app-extra", "app.d", "app.py" before "app/…" ("-" and "." sort before "/").
    expect(paths.indexOf("app-extra")).toBeLessThan(paths.indexOf("app/main.py"));
    expect(paths.indexOf("app.py")).toBeLessThan(paths.indexOf("app/main.py"));
    expect(paths).not.toContain("web/node_modules");
    expect(paths).not.toContain("app/util.pyc");
    expect(paths).not.toContain("sub/.git");
    expect(paths).toContain("link");

    // Force-included paths inside excluded folders: the folder's other contents stay excluded.
    const forced = bothWays(dir, DEFAULT_IGNORE_PATTERNS, ["node_modules", "node_modules/package.json", "app/util.pyc"]);
    expect(forced.fast).toEqual(forced.general);
    expect(forced.paths).toEqual(expect.arrayContaining(["node_modules", "node_modules/package.json", "app/util.pyc"]));
    expect(forced.paths).not.toContain("node_modules/left-pad");
  });

  it("agrees with the general matcher on random trees, rules and forced paths", () => {
    const names = ["a", "b", "a.b", "a-b", "a b", "ab", "aXb", "tmp1", "tmp", "build", "x.log", "x.pyc", "node_modules", ".git", "é", "\u{1F600}", "\uE000"];
    const pool = ["**/node_modules", "**/.git", "**/*.pyc", "**/*.log", "**/tmp?", "**/a*b", "**/build", "**/é", "**/\u{1F600}", "**/?"];
    const pathArb = fc.array(fc.constantFrom(...names), { minLength: 1, maxLength: 4 }).map((parts) => parts.join("/"));
    fc.assert(
      fc.property(fc.uniqueArray(pathArb, { minLength: 1, maxLength: 25 }), fc.subarray(pool), fc.nat(), (files, patterns, seed) => {
        const dir = join(root, `random-${cases++}`);
        // A path can't be both a file and a folder: keep only files that are no other file's prefix.
        const leaves = files.filter((f) => !files.some((g) => g.startsWith(`${f}/`)));
        write(dir, leaves);
        const all = walkDirectory(dir, []).map((e) => e.path);
        const forceInclude = all.filter((_, i) => (seed >> (i % 30)) & 1 && i % 3 === 0);
        const { fast, general, paths } = bothWays(dir, patterns, forceInclude);
        expect(fast).toEqual(general);
        expect(paths).toEqual([...paths].sort(compareUtf8));
        rmSync(dir, { recursive: true, force: true });
      }),
      { numRuns: 150 },
    );
  });
});
