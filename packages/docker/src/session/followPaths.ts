/**
 * fsutil's FollowPaths (followlinks.go): the paths a receiver names in `followpaths` metadata, with
 * every symlink met along each of them also followed to its target, become extra include patterns.
 * The dockerfile frontend of BuildKit ≤ 0.9 (the Docker Engine 20.10's) reads `.dockerignore`
 * and each COPY's sources this way — a sender that ignores them sends the whole context for the
 * `.dockerignore` read alone.
 */
import { posix } from "node:path";
import { IgnoreMatcher } from "@kiln/core/plugin";

/** What the resolver needs of a source tree: the symlink target at a path, if it is a symlink. */
export type LinkLookup = (path: string) => string | undefined;

/** The names of a directory's entries (for follow paths whose last part is a wildcard). */
export type DirLookup = (dir: string) => readonly string[];

/**
 * The include patterns `followPaths` stand for: each path, and for a symlink on the way, the link
 * and the path through its target. Undefined when one of them is the root (no filter at all).
 */
export function followLinks(followPaths: readonly string[], linkAt: LinkLookup, namesIn: DirLookup): string[] | undefined {
  const resolved = new Set<string>();
  const append = (input: string, depth: number): void => {
    // A link cycle (a → b → a) ends where fsutil's would: at a path already resolved.
    if (depth > 64) return;
    let rest = posix.normalize(input).replace(/^\/+/, "");
    let current = ".";
    for (;;) {
      const slash = rest.indexOf("/");
      const part = slash === -1 ? rest : rest.slice(0, slash);
      rest = slash === -1 ? "" : rest.slice(slash + 1);
      current = posix.join(current, part);
      const targets = readLinks(current, linkAt, namesIn);
      if ((rest === "" || targets.length > 0) && resolved.has(current)) return;
      if (targets.length > 0) {
        resolved.add(current);
        for (const target of targets) append(posix.join(target, rest), depth + 1);
        return;
      }
      if (rest === "") {
        resolved.add(current);
        return;
      }
    }
  };
  for (const path of followPaths) append(path, 0);
  return dedupePaths([...resolved].sort());
}

/** Symlink targets at `path` as paths from the root (a wildcard last part: of every matching link). */
function readLinks(path: string, linkAt: LinkLookup, namesIn: DirLookup): string[] {
  const base = posix.basename(path);
  if (/[*?[]/.test(base)) {
    const dir = posix.dirname(path);
    const matcher = new IgnoreMatcher([base]);
    return namesIn(dir)
      .filter((name) => matcher.matches(name))
      .flatMap((name) => readLinks(dir === "." ? name : `${dir}/${name}`, linkAt, () => []));
  }
  const link = linkAt(path);
  if (link === undefined) return [];
  const target = posix.normalize(link);
  return [target.startsWith("/") ? target : posix.join("/", posix.dirname(path), target)];
}

/** fsutil's dedupePaths on a sorted list: drops paths under one already kept; the root means "no filter". */
function dedupePaths(sorted: readonly string[]): string[] | undefined {
  const out: string[] = [];
  let last: string | undefined;
  for (const path of sorted) {
    if (path === "." || path === "/" || path === "") return undefined;
    if (last !== undefined && path.startsWith(`${last}/`)) continue;
    out.push(path);
    last = path;
  }
  return out;
}
