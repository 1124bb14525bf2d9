import { describe, expect, it } from "vitest";
import { InvalidReferenceError } from "../src/errors.js";
import { formatReference, parseReference } from "../src/reference.js";

const D64 = "a".repeat(64);
const SHA = `sha256:${"0123456789abcdef".repeat(4)}`;

// Expected values follow distribution/reference's ParseNormalizedNamed (what `docker pull` accepts
// and how it names the image), as documented in its tests and Docker's docs.
const valid: Array<[input: string, registry: string, repository: string, tag?: string, digest?: string]> = [
  ["ubuntu", "docker.io", "library/ubuntu"],
  ["ubuntu:22.04", "docker.io", "library/ubuntu", "22.04"],
  ["ubuntu:latest", "docker.io", "library/ubuntu", "latest"],
  ["library/ubuntu", "docker.io", "library/ubuntu"],
  ["docker.io/ubuntu", "docker.io", "library/ubuntu"],
  ["docker.io/library/ubuntu:20.04", "docker.io", "library/ubuntu", "20.04"],
  ["index.docker.io/ubuntu", "docker.io", "library/ubuntu"],
  ["index.docker.io/foo/bar:1", "docker.io", "foo/bar", "1"],
  ["foo/bar", "docker.io", "foo/bar"],
  ["foo/bar/baz", "docker.io", "foo/bar/baz"],
  ["python:3.11-slim-bookworm", "docker.io", "library/python", "3.11-slim-bookworm"],
  ["localhost/foo", "localhost", "foo"],
  ["localhost:5000/foo", "localhost:5000", "foo"],
  ["localhost:5000/foo/bar:v1", "localhost:5000", "foo/bar", "v1"],
  ["localhost", "docker.io", "library/localhost"],
  ["localhost:5000", "docker.io", "library/localhost", "5000"],
  ["ghcr.io/acme/app:1.0", "ghcr.io", "acme/app", "1.0"],
  ["quay.io/org/repo", "quay.io", "org/repo"],
  ["registry.example.com:443/a/b/c:tag_1", "registry.example.com:443", "a/b/c", "tag_1"],
  ["127.0.0.1:5000/x", "127.0.0.1:5000", "x"],
  ["[::1]:5000/foo", "[::1]:5000", "foo"],
  ["[2001:db8::1]/foo:bar", "[2001:db8::1]", "foo", "bar"],
  ["myhost:8080/repo", "myhost:8080", "repo"],
  ["my-registry.local/team/svc", "my-registry.local", "team/svc"],
  ["Example.COM/foo", "Example.COM", "foo"],
  ["Registry/foo", "Registry", "foo"],
  ["foo_bar/baz", "docker.io", "foo_bar/baz"],
  ["foo__bar", "docker.io", "library/foo__bar"],
  ["foo.bar", "docker.io", "library/foo.bar"],
  ["foo--bar", "docker.io", "library/foo--bar"],
  ["a/b-c.d_e", "docker.io", "a/b-c.d_e"],
  ["ubuntu:Tag_With.Caps-1", "docker.io", "library/ubuntu", "Tag_With.Caps-1"],
  ["ubuntu:_underscore", "docker.io", "library/ubuntu", "_underscore"],
  [`ubuntu@${SHA}`, "docker.io", "library/ubuntu", undefined, SHA],
  [`ubuntu:22.04@${SHA}`, "docker.io", "library/ubuntu", "22.04", SHA],
  [`localhost:5000/foo:v1@${SHA}`, "localhost:5000", "foo", "v1", SHA],
  [`ghcr.io/a/b@sha512:${"f".repeat(128)}`, "ghcr.io", "a/b", undefined, `sha512:${"f".repeat(128)}`],
  [`ubuntu:${"t".repeat(128)}`, "docker.io", "library/ubuntu", "t".repeat(128)],
  [`${"a".repeat(235)}`, "docker.io", `library/${"a".repeat(235)}`],
  ["123/456", "docker.io", "123/456"],
  ["0", "docker.io", "library/0"],
];

const invalid: Array<[input: string, reason: RegExp]> = [
  ["", /empty/],
  ["Ubuntu", /lowercase/],
  ["foo/Bar", /lowercase/],
  ["localhost:5000/Foo", /lowercase/],
  ["ubuntu:", /tag/],
  ["ubuntu:-tag", /tag/],
  ["ubuntu:.tag", /tag/],
  [`ubuntu:${"t".repeat(129)}`, /at most 128/],
  ["ubuntu:ta/g", /not valid|registry/],
  ["ubuntu@sha256:abc", /digest/],
  [`ubuntu@sha256:${"A".repeat(64)}`, /lowercase hex/],
  [`ubuntu@md5:${"a".repeat(32)}`, /not supported/],
  [`ubuntu@sha256:${"a".repeat(63)}`, /64/],
  [D64, /image ID/],
  ["-foo", /not valid/],
  ["foo-", /not valid/],
  ["foo..bar", /not valid/],
  ["foo___bar", /not valid/],
  ["foo//bar", /not valid/],
  ["/foo", /not valid/],
  ["foo/", /not valid/],
  ["foo bar", /whitespace/],
  ["foo\nbar", /whitespace/],
  ["host:port/foo", /registry/],
  ["-host.com/foo", /registry/],
  ["[::1/foo", /registry|not valid/],
  ["ubuntu:a:b", /not valid/],
  ["ubuntu@@sha256:x", /digest/],
  [`${"a".repeat(246)}`, /255/],
  [`example.com/${"a".repeat(244)}`, /255/],
  ["foo$bar", /not valid/],
];

describe("parseReference", () => {
  it("has a table of at least 50 cases", () => {
    expect(valid.length + invalid.length).toBeGreaterThanOrEqual(50);
  });

  it.each(valid)("parses %s", (input, registry, repository, tag, digest) => {
    const parsed = parseReference(input);
    expect(parsed).toEqual({ registry, repository, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) });
    // The canonical form parses back to the same value.
    expect(parseReference(formatReference(parsed))).toEqual(parsed);
  });

  it.each(invalid)("rejects %j", (input, reason) => {
    let error: unknown;
    try {
      parseReference(input);
    } catch (e) {
      error = e;
    }
    expect(InvalidReferenceError.isInstance(error)).toBe(true);
    const e = error as InvalidReferenceError;
    expect(e.message).toMatch(reason);
    expect(e.hint).toBeTruthy();
    expect(e.details).toMatchObject({ value: input });
  });
});

describe("parseReference with values that are not strings", () => {
  it("throws InvalidReferenceError, even for values String() cannot convert", () => {
    for (const value of [
      Object.create(null),
      {
        toString: () => {
          throw new Error("no");
        },
      },
      5,
      null,
      undefined,
      Symbol("s"),
    ]) {
      expect(() => parseReference(value as never), String(typeof value)).toThrow(InvalidReferenceError);
    }
    expect(() => parseReference(Object.create(null) as never)).toThrow(/expected a string, got object/);
    expect(() => parseReference("")).toThrow(/it is empty/);
  });
});

describe("formatReference", () => {
  it("writes the canonical form", () => {
    expect(formatReference(parseReference("ubuntu"))).toBe("docker.io/library/ubuntu");
    expect(formatReference(parseReference(`ubuntu:1@${SHA}`))).toBe(`docker.io/library/ubuntu:1@${SHA}`);
    expect(formatReference(parseReference("[::1]:5000/foo:bar"))).toBe("[::1]:5000/foo:bar");
  });

  it("writes Docker's familiar form on request", () => {
    expect(formatReference(parseReference("docker.io/library/ubuntu:22.04"), { familiar: true })).toBe("ubuntu:22.04");
    expect(formatReference(parseReference("index.docker.io/foo/bar"), { familiar: true })).toBe("foo/bar");
    expect(formatReference(parseReference("library/a/b"), { familiar: true })).toBe("library/a/b");
    expect(formatReference(parseReference("ghcr.io/a/b:1"), { familiar: true })).toBe("ghcr.io/a/b:1");
  });
});
