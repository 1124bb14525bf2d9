/** The registry client's parsers: platforms, auth challenges, Retry-After, rate-limit headers, endpoints, token cache. */
import { describe, expect, it } from "vitest";
import { parseChallenges, TokenCache } from "../src/registry/auth.js";
import { normalizeConfigKey, helperServerUrl } from "../src/registry/dockerConfig.js";
import { RegistryClient } from "../src/registry/client.js";
import { isLoopbackRegistry, resolveEndpoint } from "../src/registry/endpoints.js";
import { missingPlatforms, normalizePlatform, platformsOfIndex } from "../src/registry/platforms.js";
import { backoffDelay, parseRateLimit, parseRetryAfter, resolveRetryOptions } from "../src/registry/retry.js";

describe("platforms", () => {
  it.each([
    ["linux/aarch64", "linux/arm64"],
    ["arm64/v8", "linux/arm64"],
    ["linux/arm64/v8", "linux/arm64"],
    ["x86_64", "linux/amd64"],
    ["amd64", "linux/amd64"],
    ["linux/arm/v7", "linux/arm/v7"],
  ])("%s → %s", (input, expected) => expect(normalizePlatform(input)).toBe(expected));

  it("normalises config fields", () => {
    expect(normalizePlatform({ os: "linux", architecture: "aarch64", variant: "v8" })).toBe("linux/arm64");
  });

  it("reads an index, ignoring attestation entries", () => {
    const index = {
      manifests: [
        { platform: { os: "linux", architecture: "x86_64" } },
        { platform: { os: "unknown", architecture: "unknown" }, annotations: { "vnd.docker.reference.type": "attestation-manifest" } },
        { platform: { os: "linux", architecture: "arm64", variant: "v8" } },
        { platform: { os: "linux", architecture: "amd64" } },
      ],
    };
    expect(platformsOfIndex(index)).toEqual(["linux/amd64", "linux/arm64"]);
    expect(missingPlatforms(["linux/amd64", "linux/arm64"], ["linux/amd64"])).toEqual(["linux/arm64"]);
    expect(missingPlatforms(["linux/arm64"], ["linux/aarch64"])).toEqual([]);
  });
});

describe("WWW-Authenticate", () => {
  it("parses Bearer with realm, service, scope and error", () => {
    const [c] = parseChallenges(
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/a:pull,push",error="insufficient_scope"',
    );
    expect(c).toEqual({
      scheme: "bearer",
      params: { realm: "https://auth.docker.io/token", service: "registry.docker.io", scope: "repository:library/a:pull,push", error: "insufficient_scope" },
    });
  });
  it("parses Basic and several challenges in one header", () => {
    expect(parseChallenges('Basic realm="kiln"')).toEqual([{ scheme: "basic", params: { realm: "kiln" } }]);
    expect(parseChallenges('Basic realm="a", Bearer realm="https://t/x",service="s"').map((c) => c.scheme)).toEqual(["basic", "bearer"]);
  });
});

describe("retries and rate limits", () => {
  it("reads Retry-After as seconds or an HTTP date", () => {
    expect(parseRetryAfter("7")).toBe(7000);
    const now = Date.parse("2024-01-01T00:00:00Z");
    expect(parseRetryAfter("Mon, 01 Jan 2024 00:00:30 GMT", now)).toBe(30_000);
    expect(parseRetryAfter("soon")).toBeUndefined();
  });
  it("reads Docker Hub's rate-limit headers", () => {
    expect(parseRateLimit({ "ratelimit-limit": "100;w=21600", "ratelimit-remaining": "76;w=21600" })).toEqual({
      limit: 100,
      remaining: 76,
      windowSeconds: 21600,
    });
    expect(parseRateLimit({})).toBeUndefined();
  });
  it("jittered backoff stays within its exponential ceiling", () => {
    const o = resolveRetryOptions({ baseDelayMs: 100, maxDelayMs: 1000 });
    expect(backoffDelay(0, o, () => 0)).toBe(50);
    expect(backoffDelay(0, o, () => 1)).toBe(100);
    expect(backoffDelay(3, o, () => 1)).toBe(800);
    expect(backoffDelay(10, o, () => 1)).toBe(1000);
  });
});

describe("endpoints and config keys", () => {
  it("talks plain HTTP to loopback registries and to listed insecure ones only", () => {
    expect(isLoopbackRegistry("localhost:5000")).toBe(true);
    expect(isLoopbackRegistry("127.1.2.3:80")).toBe(true);
    expect(isLoopbackRegistry("[::1]:5000")).toBe(true);
    expect(isLoopbackRegistry("registry.local:5000")).toBe(false);
    expect(resolveEndpoint("registry.local:5000").url).toBe("https://registry.local:5000");
    expect(resolveEndpoint("registry.local:5000", {}, ["registry.local:5000"]).url).toBe("http://registry.local:5000");
    expect(resolveEndpoint("docker.io")).toMatchObject({ url: "https://registry-1.docker.io", tokenRealm: "https://auth.docker.io/token" });
  });
  it("reads KILN_INSECURE_REGISTRIES", () => {
    const client = new RegistryClient({ env: { KILN_INSECURE_REGISTRIES: "registry.local:5000, other.example" } });
    expect(client.endpointFor("registry.local:5000").url).toBe("http://registry.local:5000");
    expect(client.endpointFor("other.example:443").url).toBe("http://other.example:443");
    expect(client.endpointFor("ghcr.io").url).toBe("https://ghcr.io");
  });
  it("matches docker config keys the way the docker CLI stores them", () => {
    expect(normalizeConfigKey("https://index.docker.io/v1/")).toBe("docker.io");
    expect(normalizeConfigKey("https://ghcr.io")).toBe("ghcr.io");
    expect(helperServerUrl("docker.io")).toBe("https://index.docker.io/v1/");
    expect(helperServerUrl("ghcr.io")).toBe("ghcr.io");
  });
});

it("token cache keeps a token until shortly before it expires", () => {
  const cache = new TokenCache(1_000);
  cache.set("k", "t", 60, 0);
  expect(cache.get("k", 58_000)).toBe("t");
  expect(cache.get("k", 59_500)).toBeUndefined();
});
