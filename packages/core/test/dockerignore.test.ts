import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import { ValidationError } from "../src/errors.js";
import { IgnoreMatcher, parseDockerignore } from "../src/dockerignore.js";

const require = createRequire(import.meta.url);
const balena = require("@balena/dockerignore") as (o?: { ignorecase?: boolean }) => { add(p: string[]): { ignores(path: string): boolean } };

describe("parseDockerignore (moby ignorefile.ReadAll)", () => {
  it("reads moby's own test file the same way", () => {
    const text = "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n";
    expect(parseDockerignore(text)).toEqual(["test1", "test2", "a/file/here", "lastfile", "!inverted/abs/path"]);
  });

  it("strips a BOM, CRLF, trailing spaces, ./ and cleans paths; only a leading # is a comment", () => {
    const text = "\uFEFFfirst\r\n  spaced  \r\n./dot/./x/../y\n a#b\n  # not a comment\n//double//slash/\n";
    expect(parseDockerignore(text)).toEqual(["first", "spaced", "dot/y", "a#b", "# not a comment", "double/slash"]);
  });

  it("keeps a lone ! so that the matcher can reject it like Docker", () => {
    expect(parseDockerignore("!\n! ")).toEqual(["!", "!"]);
    expect(() => new IgnoreMatcher(["!"])).toThrow(/illegal exclusion pattern/);
  });
});

// Vectors from moby/patternmatcher's TestMatches (single pattern; "inexact" = matched via a parent).
const single: Array<[pattern: string, path: string, matches: boolean]> = [
  ["**", "file", true],
  ["**/", "file", true],
  ["**", "dir/file", true],
  ["**/**", "dir/file", true],
  ["dir/**", "dir/file", true],
  ["dir/**", "dir/dir2/file", true],
  ["**/dir", "dir", true],
  ["**/dir", "dir/file", true],
  ["**/dir2/*", "dir/dir2/file", true],
  ["**/dir2/**", "dir/dir2/dir3/file", true],
  ["**file", "file", true],
  ["**file", "dir/file", true],
  ["**/file", "dir/dir/file", true],
  ["**/file*", "dir/dir/file.txt", true],
  ["**/file*.txt", "dir/dir/file.txt", true],
  ["**/**/*.txt", "dir/dir/file.txt", true],
  ["**/**/*.txt2", "dir/dir/file.txt", false],
  ["**/*.txt", "file.txt", true],
  ["a**/*.txt", "a/dir/dir/file.txt", true],
  ["a/*.txt", "a/dir/file.txt", false],
  ["a/*.txt", "a/file.txt", true],
  ["a/*.txt**", "a/file.txt", true],
  ["a[b-d]e", "ae", false],
  ["a[b-d]e", "ace", true],
  ["a[b-d]e", "aae", false],
  ["a[^b-d]e", "aze", true],
  [".*", ".foo", true],
  [".*", "foo", false],
  ["abc.def", "abcdef", false],
  ["abc.def", "abc.def", true],
  ["abc?def", "abcZdef", true],
  ["abc?def", "abcdef", false],
  ["**/foo/bar", "foo/bar", true],
  ["**/foo/bar", "dir/dir2/foo/bar", true],
  ["abc/**", "abc", false],
  ["abc/**", "abc/def/ghi", true],
  ["**/.foo", ".foo", true],
  ["**/.foo", "bar.foo", false],
  ["a(b)c/def", "a(b)c/def", true],
  ["a(b)c/def", "a(b)c/xyz", false],
  ["a.|)$(}+{bc", "a.|)$(}+{bc", true],
  ["dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", true],
  ["a\\\\", "a\\", true],
  ["a\\*b", "a*b", true],
  ["a\\*b", "ab", false],
  // from Go's filepath.Match tests, as moby runs them
  ["a*", "ab/c", true],
  ["a*/b", "a/c/b", false],
  ["a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false],
  ["a*b?c*x", "abxbbxdbxebxczzx", true],
  ["ab[^e-g]", "abc", true],
  ["a?b", "a☺b", true],
  ["a???b", "a☺b", false],
  ["[a-ζ]*", "α", true],
  ["a?b", "a/b", false],
  ["[\\]a]", "]", true],
  ["[\\-]", "-", true],
  ["[x\\-]", "-", true],
  ["[x\\-]", "z", false],
  ["*x", "xxx", true],
];

const multi: Array<[patterns: string[], path: string, matches: boolean]> = [
  [["**", "!util/docker/web"], "util/docker/web/foo", false],
  [["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", true],
  [["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", false],
  [["*.go", "!fileutils.go"], "fileutils.go", false],
  [["!fileutils.go", "*.go"], "fileutils.go", true],
  [["docs", "!docs/README.md"], "docs/README.md", false],
  [["docs/", "!docs/README.md"], "docs/README.md", false],
  [["docs/*", "!docs/README.md"], "docs/README.md", false],
  [["docs", "!docs/README.md"], "docs/other.md", true],
];

describe("IgnoreMatcher (moby patternmatcher)", () => {
  it.each(single)("%s vs %s → %s", (pattern, path, expected) => {
    expect(new IgnoreMatcher([pattern]).matches(path)).toBe(expected);
  });

  it.each(multi)("%j vs %s → %s", (patterns, path, expected) => {
    expect(new IgnoreMatcher(patterns).matches(path)).toBe(expected);
  });

  it("gives the same answer incrementally (MatchesUsingParentResults) as from scratch", () => {
    for (const [patterns, path] of [...single.map(([p, f]) => [[p], f] as const), ...multi]) {
      const matcher = new IgnoreMatcher(patterns);
      const parts = path.split("/");
      let info: boolean[] | undefined;
      for (let n = 1; n < parts.length; n++) info = matcher.matchesUsingParent(parts.slice(0, n).join("/"), info).info;
      expect(matcher.matchesUsingParent(path, info).excluded, `${patterns} ${path}`).toBe(matcher.matches(path));
    }
  });

  it.each(["[", "[^", "[^bc", "a[", "[]a]", "[-]", "[x-]", "[-x]", "[a-b-c]", "\\", "foo\\"])("rejects the malformed pattern %j", (pattern) => {
    let error: unknown;
    try {
      new IgnoreMatcher([pattern]);
    } catch (e) {
      error = e;
    }
    expect(ValidationError.isInstance(error)).toBe(true);
    expect((error as ValidationError).field).toBe(".dockerignore pattern");
    expect((error as ValidationError).hint).toBeTruthy();
  });

  it("prunes like the docker CLI: only a `!` pattern starting with the directory reaches inside", () => {
    const matcher = new IgnoreMatcher(["build", "!build/keep.txt", "cache", "!**/keep.txt"]);
    expect(matcher.mayReincludeBelow("build")).toBe(true);
    expect(matcher.mayReincludeBelow("cache")).toBe(false);
    expect(new IgnoreMatcher(["build"]).mayReincludeBelow("build")).toBe(false);
  });
});

describe("@balena/dockerignore as a cross-check", () => {
  const patterns = ["*.log", "!keep.log", "build", "!build/keep", "**/tmp", "docs/*.md", "!docs/README.md", "a?c", "x/**/y", "[a-c]*.txt", "/abs", "./rel/"];
  const paths = [
    "a.log",
    "keep.log",
    "dir/a.log",
    "build",
    "build/x",
    "build/keep",
    "src/tmp",
    "src/tmp/z",
    "tmp",
    "docs/a.md",
    "docs/README.md",
    "docs/sub/a.md",
    "abc",
    "a/c",
    "x/y",
    "x/1/2/y",
    "x/1/y/z",
    "b1.txt",
    "d1.txt",
    "abs",
    "abs/q",
    "rel/f",
    "other",
  ];

  it("agrees on the subset where both follow moby (case-sensitive, no regexp metacharacters)", () => {
    const ours = new IgnoreMatcher(parseDockerignore(patterns.join("\n")));
    const theirs = balena({ ignorecase: false }).add(patterns);
    for (const path of paths) expect(ours.matches(path), path).toBe(theirs.ignores(path));
  });

  it("differs where balena departs from moby — these are the reasons for our port", () => {
    // 1. balena ignores case by default; Docker on Linux does not.
    expect(balena().add(["README.md"]).ignores("readme.md")).toBe(true);
    expect(new IgnoreMatcher(["README.md"]).matches("readme.md")).toBe(false);
    // 2. balena leaves + ( ) | { } as regexp syntax; moby escapes them.
    expect(balena({ ignorecase: false }).add(["foo+bar"]).ignores("foo+bar")).toBe(false);
    expect(new IgnoreMatcher(["foo+bar"]).matches("foo+bar")).toBe(true);
    // 3. moby's suffix shortcut: a leading ** followed by literal text matches any path ending in it.
    expect(balena({ ignorecase: false }).add(["**file"]).ignores("dir/myfile")).toBe(false);
    expect(new IgnoreMatcher(["**file"]).matches("dir/myfile")).toBe(true);
    // 4. a lone "!" is an error in Docker; balena drops it.
    expect(() => balena().add(["!"])).not.toThrow();
    expect(() => new IgnoreMatcher(["!"])).toThrow();
  });
});
