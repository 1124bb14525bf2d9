/**
 * Each published package stands on its own on the npm website: its package.json names the repository
 * (the root package.json's, with the package's `directory`), and its README links only absolutely —
 * a relative link would point into a monorepo the npm page does not have. Links into this repository
 * must name a path that exists.
 */
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = resolve(import.meta.dirname, "../../..");

interface Manifest {
  name: string;
  private?: boolean;
  repository?: { type?: string; url?: string; directory?: string } | string;
}

const rootRepository = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as Manifest).repository;
/** `git+https://github.com/o/r.git` → `https://github.com/o/r`. */
const repositoryWebUrl = typeof rootRepository === "object" && rootRepository.url ? rootRepository.url.replace(/^git\+/, "").replace(/\.git$/, "") : undefined;

const published = readdirSync(join(ROOT, "packages"))
  .filter((dir) => existsSync(join(ROOT, "packages", dir, "package.json")))
  .map((dir) => ({ dir, manifest: JSON.parse(readFileSync(join(ROOT, "packages", dir, "package.json"), "utf8")) as Manifest }))
  .filter(({ manifest }) => !manifest.private);

/** Link targets of a Markdown text outside code: inline links and images, reference definitions, HTML href/src. */
function linkTargets(markdown: string): string[] {
  const prose = markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, "").replace(/`[^`\n]*`/g, "");
  const targets: string[] = [];
  for (const m of prose.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) targets.push(m[1]!);
  for (const m of prose.matchAll(/^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/gm)) targets.push(m[1]!);
  for (const m of prose.matchAll(/\b(?:href|src)\s*=\s*["']([^"']+)["']/gi)) targets.push(m[1]!);
  return targets;
}

const isAbsolute = (target: string) => /^(?:https?:|mailto:)/i.test(target) || target.startsWith("#");

describe("published packages on the npm website", () => {
  it("the root package.json names the repository, and some packages are published", () => {
    expect(repositoryWebUrl).toMatch(/^https:\/\/[^/]+\/[^/]+\/[^/]+$/);
    expect(published.map((p) => p.manifest.name)).toEqual(expect.arrayContaining(["@kiln/core", "@kiln/docker", "@kiln/dockerhub", "@kiln/ecr"]));
  });

  it("the link scanner finds inline, reference and HTML links and skips code", () => {
    const text = '[a](../x) ![i](img.png "t")\n[b]: ./y\n<a href="z.md">z</a>\n`[c](nope)`\n```\n[d](nope)\n```\n[e](https://e.example/x) [f](#anchor)';
    expect(linkTargets(text)).toEqual(["../x", "img.png", "https://e.example/x", "#anchor", "./y", "z.md"]);
  });

  for (const { dir, manifest } of published) {
    it(`${manifest.name}: repository field with its directory`, () => {
      expect(manifest.repository).toEqual({ type: "git", url: (rootRepository as { url: string }).url, directory: `packages/${dir}` });
    });

    it(`${manifest.name}: a README with absolute links only, and links into the repository that resolve`, () => {
      const readmeFile = join(ROOT, "packages", dir, "README.md");
      expect(existsSync(readmeFile), `${readmeFile} is missing`).toBe(true);
      const targets = linkTargets(readFileSync(readmeFile, "utf8"));
      expect(
        targets.filter((t) => !isAbsolute(t)),
        `relative links in packages/${dir}/README.md`,
      ).toEqual([]);
      const intoRepository = targets
        .map((t) => new RegExp(`^${repositoryWebUrl!.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}/(?:tree|blob)/main/([^#?]*)`).exec(t)?.[1])
        .filter((path): path is string => path !== undefined);
      for (const path of intoRepository)
        expect(existsSync(join(ROOT, decodeURIComponent(path))), `packages/${dir}/README.md links to ${path}, which does not exist`).toBe(true);
    });
  }
});
