/**
 * Docker's `.dockerignore` semantics, ported from moby: `ignorefile.ReadAll` (how the file is read)
 * and `patternmatcher` (how paths are matched, incl. `MatchesUsingParentResults`, which the docker CLI
 * uses while walking a context). `@balena/dockerignore` follows moby v19.03 closely but differs from
 * what the engine does today in ways that change which files are sent; so the matching is ported here
 * and balena's module serves as a cross-check in the tests. The differences (see dockerignore.test.ts):
 *  1. balena matches case-insensitively by default; moby is case-sensitive on Linux.
 *  2. balena escapes only `.` and `$`; moby also escapes `+ ( ) | { }` (so `a+b` is literal there).
 *  3. moby treats a leading `**` followed by literal text as a plain suffix (`**foo` matches `barfoo`).
 *  4. A lone `!` is an error in moby ("illegal exclusion pattern"); balena drops it silently.
 *  5. A malformed pattern (`[a`, trailing `\`) fails the build in moby; balena may throw at match time.
 *  6. A UTF-8 BOM on the first line is stripped by moby.
 * Walk-level rules (pruning of excluded directories) live in walk.ts, next to the walk that uses them.
 *
 * Names that are not valid UTF-8 (rawNames.ts: raw bytes as escapes in the string) match as in moby,
 * which compares byte strings: exact, prefix and suffix patterns compare bytes; wildcard patterns run
 * Go's regexp, which reads each invalid byte as one U+FFFD — so `?` matches exactly one such byte and
 * `*` any run of them — and so does the JS regexp here on the path with each escaped byte as U+FFFD.
 * A wildcard pattern that itself is not valid UTF-8 fails, as Go's regexp refuses to compile it.
 */
import { ValidationError } from "./errors.js";
import { hasRawBytes, matchForm, nameBytes } from "./rawNames.js";

/** Patterns applied to a copied folder that has no ignore rules of its own: the weak spot of the
 * reference SDK, which hashed (and shipped) VCS metadata, bytecode, virtualenvs and node_modules. */
export const DEFAULT_IGNORE_PATTERNS: readonly string[] = ["**/.git", "**/__pycache__", "**/*.pyc", "**/.venv", "**/node_modules"];

/** Reads a `.dockerignore` text exactly like moby's `ignorefile.ReadAll`. */
export function parseDockerignore(text: string): string[] {
  const patterns: string[] = [];
  const lines = text.split(/\r?\n/);
  // Go's bufio.Scanner drops a final empty line; an empty text has no lines.
  for (let index = 0; index < lines.length; index++) {
    let line = lines[index]!;
    if (index === 0 && line.startsWith("\uFEFF")) line = line.slice(1);
    if (line.startsWith("#")) continue;
    let pattern = line.trim();
    if (pattern === "") continue;
    const invert = pattern.startsWith("!");
    if (invert) pattern = pattern.slice(1).trim();
    if (pattern.length > 0) {
      pattern = cleanPath(pattern);
      if (pattern.length > 1 && pattern.startsWith("/")) pattern = pattern.slice(1);
    }
    patterns.push(invert ? `!${pattern}` : pattern);
  }
  return patterns;
}

/** Go's `path.Clean` (POSIX): collapses `//`, `.` and `..`; never returns an empty string. */
export function cleanPath(path: string): string {
  if (path === "") return ".";
  const rooted = path.startsWith("/");
  const out: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length > 0 && out[out.length - 1] !== "..") out.pop();
      else if (!rooted) out.push("..");
      continue;
    }
    out.push(part);
  }
  const joined = out.join("/");
  if (rooted) return `/${joined}`;
  return joined === "" ? "." : joined;
}

type MatchType = "exact" | "prefix" | "suffix" | "regexp";

/** One compiled pattern; mirrors moby's `Pattern` including its exact/prefix/suffix shortcuts. */
export class IgnorePattern {
  readonly exclusion: boolean;
  /** The cleaned pattern without its `!`: what moby's `Pattern.String()` returns. */
  readonly cleaned: string;
  private readonly matchType: MatchType;
  private readonly regexp: RegExp | undefined;
  /** The pattern holds bytes that are not UTF-8 (exact, prefix or suffix patterns only). */
  private readonly raw: boolean;

  constructor(source: string) {
    let pattern = cleanPath(source.trim());
    this.exclusion = pattern.startsWith("!");
    if (this.exclusion) {
      if (pattern.length === 1) {
        throw new ValidationError(".dockerignore pattern", source, 'illegal exclusion pattern: "!"', {
          hint: "Write the path to re-include after the `!`, or delete the line.",
        });
      }
      pattern = pattern.slice(1);
    }
    validateGlob(source, pattern);
    this.cleaned = pattern;
    const compiled = compile(pattern);
    this.matchType = compiled.type;
    this.raw = hasRawBytes(pattern);
    if (this.raw && compiled.type === "regexp") {
      throw new ValidationError(".dockerignore pattern", source, "it has wildcards and bytes that are not UTF-8, which Docker cannot match either", {
        hint: "Save the .dockerignore as UTF-8, or name the file without wildcards.",
      });
    }
    try {
      this.regexp = compiled.type === "regexp" ? new RegExp(compiled.source, "u") : undefined;
    } catch (error) {
      throw new ValidationError(".dockerignore pattern", source, "it is not a valid pattern", {
        hint: "Check `[...]` character classes and `\\` escapes.",
        cause: error,
      });
    }
  }

  matches(path: string): boolean {
    switch (this.matchType) {
      case "exact":
        return path === this.cleaned; // the escaping is one-to-one: equal strings, equal bytes
      case "prefix": {
        const prefix = this.cleaned.slice(0, -2);
        return this.raw || hasRawBytes(path) ? nameBytes(path).subarray(0, nameBytes(prefix).length).equals(nameBytes(prefix)) : path.startsWith(prefix);
      }
      case "suffix": {
        const suffix = this.cleaned.slice(2);
        if (this.raw || hasRawBytes(path)) {
          const bytes = nameBytes(path);
          const tail = nameBytes(suffix);
          if (bytes.length >= tail.length && bytes.subarray(bytes.length - tail.length).equals(tail)) return true;
        } else if (path.endsWith(suffix)) return true;
        return suffix.startsWith("/") && path === suffix.slice(1);
      }
      default:
        return this.regexp!.test(hasRawBytes(path) ? matchForm(path) : path);
    }
  }
}

// Characters moby escapes because they mean something in a regexp but not in a Go glob.
const ESCAPED = new Set([..."+()|{}$."]);

/** moby's `Pattern.compile`, producing a JS regexp source (unicode mode) with the same meaning. */
function compile(pattern: string): { type: MatchType; source: string } {
  let source = "^";
  let type: MatchType = "exact";
  let inClass = false;
  const chars = [...pattern];
  for (let i = 0, iteration = 0; i < chars.length; i++, iteration++) {
    const ch = chars[i]!;
    if (ch === "*" && !inClass) {
      if (chars[i + 1] === "*") {
        i++;
        if (chars[i + 1] === "/") i++; // treat "**/" as "**"
        if (i + 1 >= chars.length) {
          if (type === "exact") type = "prefix";
          else {
            source += ".*";
            type = "regexp";
          }
        } else {
          source += "(.*/)?";
          type = "regexp";
        }
        if (iteration === 0) type = "suffix";
      } else {
        source += "[^/]*";
        type = "regexp";
      }
    } else if (ch === "?" && !inClass) {
      source += "[^/]";
      type = "regexp";
    } else if (ESCAPED.has(ch)) {
      source += `\\${ch}`;
    } else if (ch === "\\") {
      if (i + 1 < chars.length) {
        // Go's regexp reads `\` + punctuation as that character; a glob escape means the same.
        source += escapeLiteral(chars[++i]!, inClass);
        type = "regexp";
      } else {
        source += "\\\\";
      }
    } else if (ch === "[" && !inClass) {
      inClass = true;
      source += ch;
      if (chars[i + 1] === "^") source += chars[++i]!;
      type = "regexp";
    } else if (ch === "]") {
      source += inClass ? "]" : "\\]";
      inClass = false;
      type = "regexp";
    } else if (inClass) {
      source += ch === "[" ? "\\[" : ch; // ranges like a-z stay ranges
    } else {
      source += escapeLiteral(ch, false);
    }
  }
  if (type === "regexp") source += "$";
  return { type, source };
}

/** A literal character in a unicode-mode JS regexp (inside a class `-` and `[` are special too). */
function escapeLiteral(ch: string, inClass: boolean): string {
  if (/[\\^$.*+?()[\]{}|/]/.test(ch)) return `\\${ch}`;
  if (inClass && ch === "-") return "\\-";
  return ch;
}

/** The syntax check moby does with Go's `filepath.Match(pattern, ".")`: Go's class grammar (closed,
 * non-empty, `-` only between two characters unless escaped) and no trailing backslash. */
function validateGlob(source: string, pattern: string): void {
  const fail = (reason: string) =>
    new ValidationError(".dockerignore pattern", source, reason, {
      hint: "Docker rejects this pattern too; escape `[`, `]` or `-` with `\\`, or fix the character class.",
    });
  const chars = [...pattern];
  // Go's getEsc: one (possibly escaped) class character, which may not be `-` or `]` unescaped.
  const classChar = (i: number): number => {
    let c = chars[i];
    if (c === undefined || c === "-" || c === "]") throw fail("a character class is malformed");
    if (c === "\\") {
      i++;
      c = chars[i];
      if (c === undefined) throw fail("a character class is not closed");
    }
    if (i + 1 >= chars.length) throw fail("a character class is not closed");
    return i + 1;
  };
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i];
    if (ch === "\\") {
      if (i + 1 >= chars.length) throw fail("it ends with a backslash");
      i++;
    } else if (ch === "[") {
      i++;
      if (chars[i] === "^") i++;
      let ranges = 0;
      for (;;) {
        if (chars[i] === "]" && ranges > 0) break;
        i = classChar(i);
        if (chars[i] === "-") i = classChar(i + 1);
        ranges++;
      }
    }
  }
}

/** Opaque per-directory state, as moby's `MatchInfo`: which patterns matched the parent directory. */
export type ParentMatchInfo = readonly boolean[] | undefined;

/** A list of patterns with moby's matching rules: the last matching pattern wins, a pattern that
 * matches a parent directory matches everything below it, `!` re-includes. */
export class IgnoreMatcher {
  readonly patterns: readonly IgnorePattern[];
  readonly hasExclusions: boolean;

  constructor(patterns: readonly string[]) {
    this.patterns = patterns.filter((p) => p.trim() !== "").map((p) => new IgnorePattern(p));
    this.hasExclusions = this.patterns.some((p) => p.exclusion);
  }

  /** Matching from scratch (moby's `MatchesOrParentMatches`). `path` is a slash-separated relative path. */
  matches(path: string): boolean {
    return this.matchesUsingParent(path, undefined).excluded;
  }

  /** moby's `MatchesUsingParentResults`: the incremental form the docker CLI's walk uses. `keepInfo`
   * false skips recording per-pattern results (a file has no children to pass them to). */
  matchesUsingParent(path: string, parent: ParentMatchInfo, keepInfo = true): { excluded: boolean; info: boolean[] | undefined } {
    const info = keepInfo ? new Array<boolean>(this.patterns.length).fill(false) : undefined;
    let matched = false;
    for (let i = 0; i < this.patterns.length; i++) {
      const pattern = this.patterns[i]!;
      let match = parent !== undefined && parent.length > 0 ? parent[i]! : false;
      if (!match) {
        if (pattern.exclusion !== matched) continue;
        match = pattern.matches(path);
        if (!match && (parent === undefined || parent.length === 0)) {
          const dirs = path.split("/");
          dirs.pop();
          for (let n = 1; n <= dirs.length && !match; n++) match = pattern.matches(dirs.slice(0, n).join("/"));
        }
      }
      if (info !== undefined) info[i] = match;
      if (match) matched = !pattern.exclusion;
    }
    return { excluded: matched, info };
  }

  /** Whether an excluded directory must still be walked because a `!` pattern starts with it — the
   * docker CLI's own (prefix-only) rule, so `!**\/keep` does not reach inside an excluded folder. */
  mayReincludeBelow(dir: string): boolean {
    if (!this.hasExclusions) return false;
    const dirSlash = `${dir}/`;
    return this.patterns.some((p) => p.exclusion && `${p.cleaned}/`.startsWith(dirSlash));
  }
}
