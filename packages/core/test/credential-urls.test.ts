/**
 * No credential reaches an image: every field and copied manifest that takes a URL refuses one with
 * userinfo at declaration (and in Image.fromJSON), with a ValidationError that names the field (and
 * file:line) and never shows the credential; the detector itself (credentialUrls.ts).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findCredentialUrls, maskCredentialUrls } from "../src/credentialUrls.js";
import { renderDockerfile } from "../src/dockerfile.js";
import { ValidationError } from "../src/errors.js";
import { redactSecrets } from "../src/redact.js";
import { Image } from "../src/image.js";
import { thrown } from "./thrown.js";

const SECRET = "s3cr3tTokenValue42";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "kiln-credentials-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function file(name: string, text: string): string {
  const sub = join(dir, `f${n++}`);
  mkdirSync(sub);
  writeFileSync(join(sub, name), text);
  return join(sub, name);
}

function nodeProject(files: Record<string, string>): string {
  const sub = join(dir, `node${n++}`);
  mkdirSync(sub);
  const all = { "package.json": '{ "name": "app", "version": "1.0.0" }\n', "package-lock.json": '{ "lockfileVersion": 3 }\n', ...files };
  for (const [name, text] of Object.entries(all)) writeFileSync(join(sub, name), text);
  return sub;
}

/** The ValidationError `declare` throws; fails unless it names `field` and shows no trace of `secret`. */
function refused(declare: () => unknown, field: string | RegExp, secret = SECRET): ValidationError {
  const error = thrown(declare);
  expect(error).toBeInstanceOf(ValidationError);
  const e = error as ValidationError;
  if (typeof field === "string") expect(e.field).toBe(field);
  else expect(e.field).toMatch(field);
  for (const text of [e.message, e.hint ?? "", e.field, JSON.stringify(e.value), JSON.stringify(e.details ?? {}), JSON.stringify(e.toJSON())]) {
    expect(text).not.toContain(secret);
  }
  expect(e.message).toContain("***");
  expect(e.hint).toMatch(/build secret/);
  return e;
}

const base = () => Image.fromBase("python:3.12-slim");

describe("the detector", () => {
  it.each([
    ["pkg @ https://user:TOKEN@host/x.whl", "pkg @ https://***@host/x.whl"],
    ["git+https://user:tok@github.com/o/r", "git+https://***@github.com/o/r"],
    ["git+ssh://git@github.com/o/r.git", "git+ssh://***@github.com/o/r.git"],
    ["https://ghp_abcdef@github.com/o/r", "https://***@github.com/o/r"],
    ["https://u:p@ss@host/x", "https://***@host/x"],
    ["https://us%40er:p%3Ass@host", "https://***@host"],
    ["HTTPS://U:P@H", "HTTPS://***@H"],
    ["see https://h/?next=http://u:p@x/ ok", "see https://h/?next=http://***@x/ ok"],
    ["curl -f https://a:b@one/x && curl https://c:d@two/y", "curl -f https://***@one/x && curl https://***@two/y"],
    ["1git+https://u:p@h", "1git+https://***@h"],
    ["postgres://app:pw@db:5432/app", "postgres://***@db:5432/app"],
  ])("finds and masks %j", (text, masked) => {
    expect(findCredentialUrls(text)).toHaveLength(masked.split("***").length - 1);
    expect(maskCredentialUrls(text)).toBe(masked);
    expect(maskCredentialUrls(masked)).toBe(masked); // idempotent
  });

  it.each([
    "https://pypi.org/simple",
    "curl https://a.com/x@y",
    "mailto:a@b.com",
    "user@host",
    "git@github.com:o/r.git",
    "https://@host/",
    "https://:@host/",
    "file:///tmp/a@b",
    "https://h/#frag@x",
    "https://h?q=a@b",
    // References a shell, pip or npm fills in at build time hold no secret themselves.
    "https://oauth2:${GITLAB_TOKEN}@gitlab.com/o/r",
    "https://$API_KEY@host/x",
    "https://${user}:${pass}@host",
  ])("leaves %j alone", (text) => {
    expect(findCredentialUrls(text)).toEqual([]);
    expect(maskCredentialUrls(text)).toBe(text);
  });

  it("an ssh login name is allowed only when asked (node manifests); a password never", () => {
    expect(findCredentialUrls("git+ssh://git@github.com/o/r.git", { allowSshLogin: true })).toEqual([]);
    expect(findCredentialUrls("ssh://git@github.com/o/r.git", { allowSshLogin: true })).toEqual([]);
    expect(findCredentialUrls("git+ssh://git:pw@github.com/o/r.git", { allowSshLogin: true })).toHaveLength(1);
    expect(findCredentialUrls("https://git@github.com/o/r.git", { allowSshLogin: true })).toHaveLength(1);
  });

  it("is linear on hostile input (no quadratic scans)", () => {
    const started = Date.now();
    findCredentialUrls(`${"a".repeat(2_000_000)}://u:p@h`);
    findCredentialUrls("a://a@".repeat(300_000));
    findCredentialUrls(`https://${"x".repeat(2_000_000)}`);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe("strings the spec declares", () => {
  const url = `https://user:${SECRET}@pypi.example.com/simple`;
  it.each([
    ["PEP 508 direct URL", () => base().withPipPackages(`pkg @ http://user:${SECRET}@host/pkg-1.0-py3-none-any.whl`), "withPipPackages[0]"],
    ["VCS URL over https", () => base().withPipPackages("rich", `lib @ git+https://oauth2:${SECRET}@gitlab.com/o/lib.git@v1`), "withPipPackages[1]"],
    ["VCS URL with a token as user", () => base().withPipPackages(`lib @ git+https://${SECRET}@github.com/o/lib`), "withPipPackages[0]"],
    ["bare URL as the requirement", () => base().withPipPackages(`https://${SECRET}:x-oauth-basic@host/pkg.whl`), "withPipPackages[0]"],
    ["indexUrl", () => base().withPipPackages("rich", { indexUrl: url }), "withPipPackages indexUrl"],
    ["extraIndexUrls", () => base().withPipPackages("rich", { extraIndexUrls: ["https://pypi.org/simple", url] }), "withPipPackages extraIndexUrls[1]"],
    [
      "--find-links=URL",
      () => base().withPipPackages("rich", { extraArgs: [`--find-links=https://u:${SECRET}@host/wheels/`] }),
      "withPipPackages extraArgs[0]",
    ],
    ["-f URL", () => base().withPipPackages("rich", { extraArgs: ["-f", `https://u:${SECRET}@host/wheels/`] }), "withPipPackages extraArgs[1]"],
    ["withCommands", () => base().withCommands("echo ok", `curl -fsS https://ci:${SECRET}@artifacts.example.com/x.tgz | tar xz`), "withCommands[1]"],
    ["withCommands with secrets", () => base().withCommands(`git clone https://${SECRET}@github.com/o/r`, { secrets: ["X"] }), "withCommands[0]"],
    ["env value", () => base().withEnvVars({ DATABASE_URL: `postgres://app:${SECRET}@db/app` }), "withEnvVars.DATABASE_URL"],
    [
      "label value",
      () => base().withLabels({ "org.opencontainers.image.source": `https://${SECRET}@github.com/o/r` }),
      "withLabels.org.opencontainers.image.source",
    ],
    ["a path (generic backstop)", () => base().withWorkdir(`/srv/https://u:${SECRET}@h`), "withWorkdir"],
  ])("%s", (_name, declare, field) => {
    const error = refused(declare, field);
    expect(error.hint).toMatch(/secrets/);
  });

  it("git+ssh://git@… is refused too (any userinfo), with a hint for https plus a netrc secret", () => {
    const error = refused(() => base().withPipPackages("lib @ git+ssh://git@github.com/o/lib.git"), "withPipPackages[0]", "git@");
    expect(error.hint).toMatch(/netrc/);
    expect(error.hint).toMatch(/git\+https/);
  });

  it("fromDockerfile build args (recorded in the image history)", () => {
    const dockerfile = file("Dockerfile", "FROM busybox\nARG URL\nRUN echo $URL\n");
    const error = refused(() => Image.fromDockerfile(dockerfile, { buildArgs: { URL: `https://u:${SECRET}@h/x` } }), "buildArgs.URL");
    expect(error.hint).toMatch(/fromDockerfile\(file, \{ secrets/);
  });

  it("references and secret files are fine: the value never appears in the spec", () => {
    const image = base()
      .withCommands("curl -fsS --netrc-file /run/secrets/netrc https://host/x", 'git clone "https://oauth2:${GL_TOKEN}@gitlab.com/o/r"', { secrets: ["netrc"] })
      .withEnvVars({ INDEX: "https://pypi.org/simple" })
      .withPipPackages("pkg @ https://host/pkg-1.0-py3-none-any.whl", "lib @ git+https://github.com/o/lib@v1");
    expect(renderDockerfile(image)).toContain("${GL_TOKEN}");
  });
});

describe("manifests a layer copies", () => {
  it.each([
    ["--index-url", `--index-url https://u:${SECRET}@pypi.example.com/simple`],
    ["-i", `-i https://u:${SECRET}@pypi.example.com/simple`],
    ["--extra-index-url", `--extra-index-url=https://${SECRET}@pypi.example.com/simple`],
    ["--find-links", `--find-links https://u:${SECRET}@host/wheels`],
    ["-f", `-f https://u:${SECRET}@host/wheels`],
    ["-r URL", `-r https://u:${SECRET}@host/more.txt`],
    ["-c URL", `-c https://u:${SECRET}@host/constraints.txt`],
    ["direct URL", `pkg @ https://u:${SECRET}@host/pkg.whl`],
    ["VCS URL", `git+https://${SECRET}@github.com/o/lib.git#egg=lib`],
    ["a comment (the file is copied into the image)", `# mirror: https://u:${SECRET}@host/simple`],
  ])("requirements file: %s, named by file and line", (_name, line) => {
    const path = file("requirements.txt", `rich==13.7.1\n\n${line}\nnumpy<2\n`);
    const error = refused(() => base().withRequirements(path), `withRequirements (${path}:3)`);
    expect(error.details).toMatchObject({ file: path, line: 3 });
  });

  it("requirements file: a URL split over a `\\` continuation is read as pip reads it", () => {
    const path = file("requirements.txt", `rich\npkg @ https://u:${SECRET.slice(0, 6)}\\\n${SECRET.slice(6)}@host/pkg.whl\n`);
    const error = refused(() => base().withRequirements(path), `withRequirements (${path}:2)`);
    expect(error.message).not.toContain(SECRET.slice(0, 6));
  });

  it("requirements file without credentials is accepted (nested -r files are not followed: they are not copied)", () => {
    const path = file("requirements.txt", "--index-url https://pypi.org/simple\n-r other.txt\nrich==13.7.1 \\\n  --hash=sha256:abc\nuser@host\n");
    expect(() => base().withRequirements(path)).not.toThrow();
  });

  it("uv project: [tool.uv.sources] and [[tool.uv.index]] in pyproject.toml, sources in uv.lock", () => {
    const lock = file("uv.lock", 'version = 1\n[[package]]\nname = "rich"\nsource = { registry = "https://pypi.org/simple" }\n');
    const plain = file("pyproject.toml", '[project]\nname = "app"\nversion = "0"\ndependencies = ["rich"]\n');
    expect(() => base().withUvProject({ pyproject: plain, uvLock: lock })).not.toThrow();

    const sources = file("pyproject.toml", `[project]\nname = "app"\n\n[tool.uv.sources]\nlib = { git = "https://oauth2:${SECRET}@gitlab.com/o/lib" }\n`);
    refused(() => base().withUvProject({ pyproject: sources, uvLock: lock }), `withUvProject (${sources}:5)`);
    const index = file(
      "pyproject.toml",
      `[project]\nname = "app"\n\n[[tool.uv.index]]\nname = "private"\nurl = "https://u:${SECRET}@pypi.example.com/simple"\n`,
    );
    refused(() => base().withUvProject({ pyproject: index, uvLock: lock }), `withUvProject (${index}:6)`);
    const locked = file("uv.lock", `version = 1\n[[package]]\nname = "lib"\nsource = { registry = "https://${SECRET}@pypi.example.com/simple" }\n`);
    refused(() => base().withUvProject({ pyproject: plain, uvLock: locked }), `withUvProject (${locked}:4)`);
  });

  it("node project: an .npmrc with an auth token that would be copied is refused, naming the line", () => {
    const project = nodeProject({ ".npmrc": `registry=https://npm.example.com/\n//npm.example.com/:_authToken=${SECRET}\n` });
    const error = refused(() => Image.fromNodeBase().withNodeProject(project), `withNodeProject (${join(project, ".npmrc")}:2)`);
    expect(error.hint).toMatch(/\.dockerignore/);
    expect(error.value).toBe("//npm.example.com/:_authToken=***");
  });

  it("node project: the same .npmrc kept out of the image by .dockerignore, or a ${VAR} reference, is fine", () => {
    const ignored = nodeProject({ ".npmrc": `//npm.example.com/:_authToken=${SECRET}\n`, ".dockerignore": ".npmrc\nnode_modules\n" });
    expect(() => Image.fromNodeBase().withNodeProject(ignored)).not.toThrow();
    const viaLayer = nodeProject({ ".npmrc": `//npm.example.com/:_authToken=${SECRET}\n` });
    const dockerignore = file(".dockerignore", "**/.npmrc\n");
    expect(() => Image.fromNodeBase().withDockerignore(dockerignore).withNodeProject(viaLayer)).not.toThrow();
    const reference = nodeProject({ ".npmrc": '//npm.example.com/:_authToken=${NPM_AUTH}\n_auth = "${LEGACY}"\n' });
    expect(() => Image.fromNodeBase().withNodeProject(reference)).not.toThrow();
  });

  it("node project: registry URLs with userinfo, and _auth / _password keys", () => {
    for (const npmrc of [`registry=https://u:${SECRET}@npm.example.com/\n`, `_auth=${SECRET}\n`, `//h/:_password="${SECRET}"\n`]) {
      const project = nodeProject({ ".npmrc": `; comment\n${npmrc}` });
      refused(() => Image.fromNodeBase().withNodeProject(project), `withNodeProject (${join(project, ".npmrc")}:2)`);
    }
  });

  it("node project: dependency URLs in package.json and lockfile URLs; not ssh login names npm itself writes", () => {
    const pkg = `{\n  "name": "app",\n  "dependencies": {\n    "lib": "https://u:${SECRET}@npm.example.com/lib-1.0.0.tgz"\n  }\n}\n`;
    const project = nodeProject({ "package.json": pkg });
    const error = refused(() => Image.fromNodeBase().withNodeProject(project), `withNodeProject (${join(project, "package.json")}:4 dependencies.lib)`);
    expect(error.details).toMatchObject({ line: 4, field: "dependencies.lib" });

    const lock = `{\n  "packages": {\n    "node_modules/lib": {\n      "resolved": "https:\\/\\/${SECRET}@npm.example.com/lib.tgz"\n    }\n  }\n}\n`;
    const locked = nodeProject({ "package-lock.json": lock });
    refused(() => Image.fromNodeBase().withNodeProject(locked), `withNodeProject (${join(locked, "package-lock.json")}:4)`);

    const fine = nodeProject({
      "package.json":
        '{ "name": "app", "repository": "git+ssh://git@github.com/o/app.git", "scripts": { "db": "psql postgres://postgres:postgres@localhost/app" }, "dependencies": { "lib": "github:o/lib" } }\n',
      "package-lock.json": '{ "packages": { "node_modules/lib": { "resolved": "git+ssh://git@github.com/o/lib.git#0123abc" } } }\n',
    });
    expect(() => Image.fromNodeBase().withNodeProject(fine)).not.toThrow();
  });
});

describe("Image.fromJSON applies the same validation", () => {
  const good = () =>
    base()
      .withPipPackages("rich", { indexUrl: "https://pypi.org/simple", extraArgs: ["--no-deps"] })
      .withCommands("echo hi")
      .withEnvVars({ A: "1" })
      .withLabels({ "a.b": "c" })
      .toJSON();

  it.each([
    ["layers[0].packages[0]", (j: any) => (j.layers[0].packages[0] = `pkg @ https://u:${SECRET}@h/p.whl`)],
    ["layers[0] indexUrl", (j: any) => (j.layers[0].indexUrl = `https://u:${SECRET}@h/simple`)],
    ["layers[0] extraArgs[0]", (j: any) => (j.layers[0].extraArgs = [`--find-links=https://u:${SECRET}@h/w`])],
    ["layers[1].commands[0]", (j: any) => (j.layers[1].commands[0] = `curl https://u:${SECRET}@h/x`)],
    ["layers[2].vars[0] value", (j: any) => (j.layers[2].vars[0][1] = `https://${SECRET}@h`)],
    ["layers[3].labels[0] value", (j: any) => (j.layers[3].labels[0][1] = `https://${SECRET}@h`)],
  ])("%s", (field, edit) => {
    const json = good();
    edit(json);
    refused(() => Image.fromJSON(json), field);
    refused(() => Image.fromJSON(JSON.stringify(json)), field);
  });

  it("the files of the spec's layers where this machine has them, and only those", () => {
    const requirements = file("requirements.txt", "rich\n");
    const json = base().withRequirements(requirements).toJSON();
    writeFileSync(requirements, `--extra-index-url https://u:${SECRET}@h/simple\n`);
    refused(() => Image.fromJSON(json), `layers[0] (${requirements}:1)`);
    (json.layers[0] as { hostPath: string }).hostPath = join(dir, "not-here", "requirements.txt");
    expect(() => Image.fromJSON(json)).not.toThrow();
  });

  it("fromDockerfile build args", () => {
    const json = Image.fromDockerfile(file("Dockerfile", "FROM busybox\n"), { buildArgs: { X: "1" } }).toJSON();
    (json.base as { buildArgs: Array<[string, string]> }).buildArgs[0]![1] = `https://u:${SECRET}@h`;
    refused(() => Image.fromJSON(json), "base.buildArgs[0] value");
  });
});

describe("errors never echo a credential", () => {
  it("whatever check fails first (a newline, a bad version clause, a long value cut short)", () => {
    refused(() => base().withEnvVars({ A: `https://u:${SECRET}@h\nmore` }), "withEnvVars.A");
    refused(() => base().withPipPackages(`pkg==https://u:${SECRET}@h`), "withPipPackages[0]");
    const long = `${"x".repeat(100)} https://user:${SECRET}${"y".repeat(100)}@host`;
    refused(() => base().withLabels({ a: long }), "withLabels.a");
    // A ValidationError built anywhere masks value, message, hint and details.
    const error = new ValidationError("f", [`https://u:${SECRET}@h`], `bad https://u:${SECRET}@h`, {
      hint: `see https://${SECRET}@h`,
      details: { url: `https://u:${SECRET}@h` },
    });
    for (const text of [error.message, error.hint, JSON.stringify(error.value), JSON.stringify(error.details)]) expect(text).not.toContain(SECRET);
  });

  it("redactSecrets (events, logs, printed errors) masks the whole userinfo too, up to the last `@`", () => {
    expect(redactSecrets(`GET https://u:${SECRET}@x@host/simple`)).toBe("GET https://***@host/simple");
  });
});
