// The registry cache refs of a build split across endpoints (cache.ts groupCache): one ref per
// platform group, named deterministically after the group's platforms, for exports; imports read the
// group's ref and the ref as given. Single-endpoint builds keep the ref as given (resolveCache is unchanged).
import { describe, expect, it } from "vitest";
import { groupCache, groupCacheRef, groupCacheSuffix } from "../src/cache.js";
import { failedImportReporter } from "../src/cacheImportStatus.js";

describe("split build cache refs", () => {
  it("a group's ref is the ref's tag followed by its platforms, sorted, whatever their order", () => {
    expect(groupCacheRef("127.0.0.1:5000/app:buildcache", ["linux/arm64"])).toBe("127.0.0.1:5000/app:buildcache-linux-arm64");
    expect(groupCacheRef("reg.example/team/app:cache", ["linux/arm/v7", "linux/amd64"])).toBe(
      groupCacheRef("reg.example/team/app:cache", ["linux/amd64", "linux/arm/v7"]),
    );
    expect(groupCacheSuffix(["linux/arm/v7", "linux/amd64"])).toBe("linux-amd64_linux-arm-v7");
  });

  it("groups with different platforms get different refs; a ref without a tag uses latest; a ref by digest is kept", () => {
    const amd = groupCacheRef("reg.example:5000/app", ["linux/amd64"]);
    const arm = groupCacheRef("reg.example:5000/app", ["linux/arm64"]);
    expect(amd).toBe("reg.example:5000/app:latest-linux-amd64");
    expect(arm).not.toBe(amd);
    const pinned = `reg.example/app@sha256:${"a".repeat(64)}`;
    expect(groupCacheRef(pinned, ["linux/amd64"])).toBe(pinned);
  });

  it("a tag that would be too long for a registry ends with a digest of the platforms instead: still valid and deterministic", () => {
    const tag = "t".repeat(120);
    const platforms = ["linux/amd64", "linux/arm64", "linux/arm/v7"] as const;
    const ref = groupCacheRef(`reg.example/app:${tag}`, [...platforms]);
    const groupTag = ref.slice("reg.example/app:".length);
    expect(groupTag).toMatch(/^[\w][\w.-]{0,127}$/);
    expect(ref).toBe(groupCacheRef(`reg.example/app:${tag}`, [...platforms].reverse()));
    expect(ref).not.toBe(groupCacheRef(`reg.example/app:${tag}`, ["linux/amd64", "linux/arm64"]));
  });

  it("exports use only the group's ref; imports read the group's ref first, then the ref as given (a user's cacheFrom stays read); other cache types pass unchanged", () => {
    const given = "reg.example/app:main-cache";
    const cache = groupCache(
      {
        cacheImports: [
          { type: "registry", attrs: { ref: given } },
          { type: "gha", attrs: { scope: "x" } },
        ],
        cacheExports: [
          { type: "registry", attrs: { ref: given, mode: "max" } },
          { type: "inline", attrs: {} },
        ],
      },
      ["linux/arm64"],
    );
    const groupRef = groupCacheRef(given, ["linux/arm64"]);
    expect(groupRef).not.toBe(given);
    expect(cache.cacheExports).toEqual([
      { type: "registry", attrs: { ref: groupRef, mode: "max" } },
      { type: "inline", attrs: {} },
    ]);
    expect(cache.cacheImports).toEqual([
      { type: "registry", attrs: { ref: groupRef } },
      { type: "registry", attrs: { ref: given } },
      { type: "gha", attrs: { scope: "x" } },
    ]);
    expect([...cache.importFallbacks]).toEqual([[groupRef, given]]);
  });

  it("an import listed both as given and as the group's ref is imported once; a ref by digest once, with no fallback", () => {
    const given = "reg.example/app:buildcache";
    const groupRef = groupCacheRef(given, ["linux/amd64"]);
    const pinned = `reg.example/app@sha256:${"b".repeat(64)}`;
    const cache = groupCache(
      {
        cacheImports: [
          { type: "registry", attrs: { ref: given } },
          { type: "registry", attrs: { ref: groupRef } },
          { type: "registry", attrs: { ref: pinned } },
        ],
        cacheExports: [],
      },
      ["linux/amd64"],
    );
    const refs = cache.cacheImports.map((e) => e.attrs.ref);
    expect(refs.filter((r) => r === groupRef)).toHaveLength(1);
    expect(refs.filter((r) => r === given)).toHaveLength(1);
    expect(refs.filter((r) => r === pinned)).toHaveLength(1);
    expect(refs.indexOf(groupRef)).toBeLessThan(refs.indexOf(given));
    expect(cache.importFallbacks.has(pinned)).toBe(false);
  });

  it("a failed import of a group's ref and of the ref it came from warns once, only when both failed; any other ref once, on failure", () => {
    const given = "reg.example/app:buildcache";
    const groupRef = groupCacheRef(given, ["linux/amd64"]);
    const warnings: string[][] = [];
    const report = failedImportReporter(new Map([[groupRef, given]]), (refs) => warnings.push([...refs]));
    report(given, "not found"); // the usual case of a build only ever split: no warning
    report(given, "not found");
    expect(warnings).toEqual([]);
    report(groupRef, "not found"); // now the group has no cache at all
    report(groupRef, "not found");
    expect(warnings).toEqual([[groupRef, given]]);
    report("reg.example/other:cache", "not found");
    report("reg.example/other:cache", "not found");
    expect(warnings).toEqual([[groupRef, given], ["reg.example/other:cache"]]);
  });
});
