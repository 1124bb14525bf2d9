/**
 * Validation tables: every validator accepts the good values and rejects the bad ones with a
 * ValidationError naming the field and carrying the value; and the Image API reports the field the
 * user wrote (e.g. `withAptPackages[2]`).
 */
import { describe, expect, it } from "vitest";
import { KilnError, ValidationError } from "../src/errors.js";
import { Image } from "../src/image.js";
import { parseReference } from "../src/reference.js";
import {
  validateAptPackage,
  validateCommand,
  validateContainerPath,
  validateContextFileName,
  validateEnvKey,
  validateEnvValue,
  validateExtraArg,
  validateImageReference,
  validateIndexUrl,
  validateLabelKey,
  validateLabelValue,
  validateNodeVersion,
  validatePipRequirement,
  validatePlatforms,
  validatePythonVersion,
  validateRegistry,
  validateRepositoryName,
  validateTag,
  validateUser,
} from "../src/validate.js";

type Validator = (field: string, value: unknown) => unknown;

function expectInvalid(validate: Validator, value: unknown, field = "the field", shownValue: unknown = value): ValidationError {
  let caught: unknown;
  try {
    validate(field, value);
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected ${JSON.stringify(value)} to be rejected`).toBeInstanceOf(ValidationError);
  const error = caught as ValidationError;
  expect(KilnError.isInstance(error)).toBe(true);
  expect(ValidationError.isInstance(error)).toBe(true);
  expect(error.code).toBe("KILN_VALIDATION");
  // List validators name the element: `platform[1]`.
  expect(error.field).toMatch(new RegExp(`^${field.replace(/[[\]]/g, "\\$&")}(\\[\\d+\\])?$`));
  if (error.field === field) expect(error.value).toEqual(shownValue);
  else expect(error.value).toEqual((value as unknown[])[Number(/\[(\d+)\]$/.exec(error.field)![1])]);
  expect(error.message).toContain(field);
  expect(error.message).not.toMatch(/[\n\r\0]/);
  return error;
}

const table: Array<[name: string, validate: Validator, good: unknown[], bad: unknown[]]> = [
  [
    "pip requirement",
    validatePipRequirement,
    [
      "pandas",
      "numpy<2",
      "numpy>=1.26,<2",
      "uvicorn[standard]>=0.30",
      "Django==5.0.*",
      "requests (>=2.0)",
      "pkg @ https://example.com/pkg-1.0-py3-none-any.whl",
      "torch==2.3.0+cpu",
      "a",
      "zope.interface",
      'pywin32; sys_platform == "win32"',
      "foo[bar,baz]~=1.4; python_version < '3.12' and platform_machine != 'arm64'",
      "x===1.0",
      "name_with_underscores!=3",
    ],
    [
      "",
      "-r requirements.txt",
      "--index-url=http://evil",
      "pandas\nRUN evil",
      "pandas\0",
      "pandas; rm -rf /",
      "numpy<<2",
      "pkg @ not a url",
      "pkg[",
      "pandas $(id)",
      " pandas",
      "pandas ",
      "numpy<2 && id",
      "pkg; python_version < '3' )",
      "pkg; (python_version < '3'",
      "pkg; unknown_var == '1'",
      "numpy 2",
      5,
      null,
      "\ud800",
    ],
  ],
  [
    "apt package",
    validateAptPackage,
    [
      "git",
      "libpq-dev",
      "g++",
      "libstdc++6",
      "python3.11",
      "curl=7.88.1-10+deb12u5",
      "libc6:arm64",
      "vim/bookworm-backports",
      "libc6:amd64=2.36-9",
      "nginx=1:1.22.1-9",
    ],
    ["", "g", "-y", "--allow-unauthenticated", "Git", "git vim", "git;id", "git\n", "git=", "git/", "git:ARM", "pkg=$(id)", "p`x`", "a&&b", "ñandu", "git\0"],
  ],
  ["env key", validateEnvKey, ["A", "_x", "MY_VAR_2", "lower"], ["", "1A", "A-B", "A B", "A=B", "A\n", "$A", "é"]],
  [
    "env value",
    validateEnvValue,
    ["", "prod", 'with "quotes" and $dollars and `ticks` and \\', "tab\there", "ünïcødé 😀", "line\u2028sep"],
    ["a\nb", "a\rb", "a\0b", "bell\u0007", "\ud800"],
  ],
  ["label key", validateLabelKey, ["org.opencontainers.image.source", "maintainer", "a", "com.example/x"], ["", "-a", "a.", "a b", "a=b", 'a"b', "a$b"]],
  ["label value", validateLabelValue, ["", "x", 'a "b" $c'], ["a\nb", "\0"]],
  [
    "container path",
    validateContainerPath,
    ["/app", "src", "./src", "/srv/my app", "/a/$b/'c'/\"d\"", "/ünï"],
    ["", "/a\nb", "/a\0", " /app", "/app ", "C:\\app"],
  ],
  [
    "user",
    validateUser,
    ["app", "1000", "app:app", "1000:1000", "_svc", "www-data", "root:0"],
    ["", "app user", "app:", ":app", "$USER", "app;id", "a:b:c", "-app", "12345678901"],
  ],
  [
    "registry",
    validateRegistry,
    [
      "ghcr.io",
      "ghcr.io/acme",
      "localhost:5000",
      "localhost",
      "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
      "registry.example.com:443/team/sub",
      "[::1]:5000",
      "Registry.Example.com",
    ],
    ["", "https://ghcr.io", "ghcr.io/Acme", "ghcr.io/", "ghcr .io", "-bad.io", "host:port", "ghcr.io//x", "a\nb"],
  ],
  [
    "repository name",
    validateRepositoryName,
    ["kiln", "my-app", "team/my_app", "a.b", "a__b", "a--b", "x/y/z"],
    ["", "MyApp", "-app", "app-", "a//b", "a___b", "a_-b", "app:1", "a b", "a".repeat(256), "/a"],
  ],
  ["tag", validateTag, ["latest", "v1.2.3", "_x", "A_b.c-d", "a".repeat(128)], ["", ".x", "-x", "a/b", "a:b", "a".repeat(129), "a b", "ü"]],
  [
    "image reference",
    validateImageReference,
    [
      "python:3.11-slim-bookworm",
      "ubuntu",
      "library/ubuntu:22.04",
      "ghcr.io/acme/base:1.0",
      "localhost:5000/x",
      `alpine@sha256:${"a".repeat(64)}`,
      `ghcr.io/a/b:1@sha256:${"b".repeat(64)}`,
      "[::1]:5000/img:tag",
    ],
    ["", "Python:3", "python:", "python:3 slim", "python:3\nRUN id", "python:$TAG", "a//b", "img@sha256:xyz"],
  ],
  [
    "platforms",
    validatePlatforms,
    [["linux/amd64"], ["linux/arm64"], ["linux/amd64", "linux/arm64"]],
    [[], ["linux/386"], ["linux/amd64", "linux/amd64"], "linux/amd64", [null]],
  ],
  [
    "python version",
    validatePythonVersion,
    [
      [3, 8],
      [3, 11],
      [3, 13],
    ],
    [[2, 7], [3, 7], [3], [3, 11, 1], ["3", "11"], [3, 1.5], "3.11", [4, 0]],
  ],
  ["node version", validateNodeVersion, [18, 20, 22], [16, 20.5, "20", 0, -1, null, 100]],
  [
    "index URL",
    validateIndexUrl,
    ["https://pypi.org/simple", "http://localhost:8080/simple/"],
    ["", "ftp://x/simple", "file:///tmp/x", "not a url", "https://user:pass@host/simple", "https://token@host/simple", "https://a\n.b"],
  ],
  [
    "extra arg",
    validateExtraArg,
    ["--no-deps", "-v", "--config-settings=x=y z", "https://host/simple", "--find-links=file:///wheels", "user@host"],
    ["", "a\nb", "\0", "https://user:TOKEN@host/simple", "--index-url=https://u:p@h/", "--extra-index-url=https://tok@host/x", "git+ssh://git@github.com/a/b"],
  ],
  ["command", validateCommand, ["echo hi", "a && b\nc"], ["", "   ", "a\0"]],
  ["context file name", validateContextFileName, ["requirements.txt", "a b.txt", "$x'.txt"], ["*.txt", "a?", "[a]", "a\\b", "a\nb", "..", ""]],
];

describe("registry normalisation", () => {
  it("a first component that is not a host is a Docker Hub namespace, as in Docker's references", () => {
    expect(validateRegistry("registry", "acme")).toBe("docker.io/acme");
    expect(validateRegistry("registry", "acme/team")).toBe("docker.io/acme/team");
    // An uppercase first component is a host, as parseReference reads it (else the URI would not parse).
    for (const host of ["ghcr.io/acme", "localhost", "localhost:5000/x", "127.0.0.1:5000", "[::1]:5000", "docker.io/acme", "Registry/team"]) {
      expect(validateRegistry("registry", host)).toBe(host);
    }
  });
});

describe.each(table)("%s", (_name, validate, good, bad) => {
  it.each(good.map((v) => [v]))("accepts %j", (value) => {
    expect(() => validate("the field", value)).not.toThrow();
  });
  it.each(bad.map((v) => [v]))("rejects %j", (value) => {
    // Credentials in URLs are never echoed back: the error carries the redacted value.
    const shown = typeof value === "string" && value.includes("@") ? value.replace(/\/\/[^/@]+@/, "//***@") : value;
    const error = expectInvalid(validate, value, "the field", shown);
    expect(typeof error.hint === "string" || error.hint === undefined).toBe(true);
  });
});

describe("validation hints", () => {
  it("says what to do", () => {
    expect(expectInvalid(validatePipRequirement, "-e .").hint).toMatch(/PipOptions/);
    expect(expectInvalid(validateRegistry, "https://ghcr.io/acme").hint).toContain('"ghcr.io/acme"');
    expect(expectInvalid(validateRepositoryName, "MyApp").hint).toContain('"myapp"');
    expect(expectInvalid(validateEnvValue, "a\nb").hint).toMatch(/one line/);
  });

  it("never shows index URL credentials", () => {
    const error = expectInvalid(validateIndexUrl, "https://user:s3cret@host/simple", "the field", "https://***@host/simple");
    expect(error.message).not.toContain("s3cret");
    expect(JSON.stringify(error.toJSON())).not.toContain("s3cret");
  });

  it("never shows credentials given in installer extraArgs, and says where they belong", () => {
    const error = expectInvalid(validateExtraArg, "--extra-index-url=https://user:TOKEN@host/simple", "the field", "--extra-index-url=https://***@host/simple");
    expect(JSON.stringify(error.toJSON())).not.toContain("TOKEN");
    expect(error.hint).toMatch(/pip\.conf|netrc/);
    expect(error.hint).toBe(expectInvalid(validateIndexUrl, "https://u:p@host/simple", "the field", "https://***@host/simple").hint);
    // Through the Image API, as one argv element or as the value after a flag.
    for (const extraArgs of [["--extra-index-url", "https://user:TOKEN@host/simple"], ["--index-url=https://u:TOKEN@h/"]]) {
      let caught: unknown;
      try {
        Image.fromDebianBase().withPipPackages("rich", { extraArgs });
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(ValidationError);
      expect((caught as ValidationError).message).not.toContain("TOKEN");
      expect(JSON.stringify((caught as ValidationError).value)).not.toContain("TOKEN");
    }
  });

  it("image references follow parseReference's grammar and keep its hint, naming the field", () => {
    for (const ref of [`x@md5:${"a".repeat(32)}`, `x@sha256:${"a".repeat(32)}`, `x@sha256:${"A".repeat(64)}`, "a".repeat(64)]) {
      const error = expectInvalid(validateImageReference, ref, "baseImage");
      expect(() => parseReference(ref)).toThrow();
      expect(error.hint).toBeTruthy();
      expect(error.message).not.toContain("Invalid image reference");
    }
    expect(expectInvalid(validateImageReference, `x@md5:${"a".repeat(32)}`).hint).toMatch(/sha256/);
  });

  it("accepted image references also parse as Docker references", () => {
    for (const ref of table.find(([n]) => n === "image reference")![2] as string[]) {
      expect(() => parseReference(ref)).not.toThrow();
    }
  });
});

describe("the Image API names the field the user wrote", () => {
  const cases: Array<[field: string, make: () => unknown, value: unknown]> = [
    ["withAptPackages[2]", () => Image.fromDebianBase().withAptPackages("git", "curl", "bad name"), "bad name"],
    ["withPipPackages[1]", () => Image.fromDebianBase().withPipPackages("pandas", "-e ."), "-e ."],
    ["withPipPackages indexUrl", () => Image.fromDebianBase().withPipPackages("x", { indexUrl: "ftp://x" }), "ftp://x"],
    ["withPipPackages extraArgs[0]", () => Image.fromDebianBase().withPipPackages("x", { extraArgs: ["a\nb"] }), "a\nb"],
    ["withEnvVars key", () => Image.fromDebianBase().withEnvVars({ "BAD-KEY": "1" }), "BAD-KEY"],
    ["withEnvVars.A", () => Image.fromDebianBase().withEnvVars({ A: "x\ny" }), "x\ny"],
    ["withLabels key", () => Image.fromDebianBase().withLabels({ "a b": "1" }), "a b"],
    ["withWorkdir", () => Image.fromDebianBase().withWorkdir("/a\nb"), "/a\nb"],
    ["withUser", () => Image.fromDebianBase().withUser("root;id"), "root;id"],
    ["withCommands[1]", () => Image.fromDebianBase().withCommands("ok", "bad\0"), "bad\0"],
    ["registry", () => Image.fromDebianBase({ registry: "https://ghcr.io" }), "https://ghcr.io"],
    ["name", () => Image.fromDebianBase({ name: "My App" }), "My App"],
    ["platform[0]", () => Image.fromDebianBase({ platform: ["linux/s390x" as never] }), "linux/s390x"],
    ["pythonVersion", () => Image.fromDebianBase({ pythonVersion: [2, 7] }), [2, 7]],
    ["nodeVersion", () => Image.fromNodeBase({ nodeVersion: 16 }), 16],
    ["baseImage", () => Image.fromDebianBase({ baseImage: "py thon" }), "py thon"],
    ["fromBase ref", () => Image.fromBase("UPPER:1"), "UPPER:1"],
    ["tag", () => Image.fromDebianBase().clone({ tag: "-bad" }), "-bad"],
    ["uvImage", () => Image.fromDebianBase({ uvImage: "" }), ""],
    ["installer", () => Image.fromDebianBase({ installer: "conda" as never }), "conda"],
  ];
  it.each(cases)("%s", (field, make, value) => {
    let caught: unknown;
    try {
      make();
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ValidationError);
    expect((caught as ValidationError).field).toBe(field);
    expect((caught as ValidationError).value).toEqual(value);
  });
});
