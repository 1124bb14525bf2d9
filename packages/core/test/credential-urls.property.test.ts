/**
 * Property: no spec holding a credential-bearing URL renders. Random schemes, userinfo with and without
 * a password (percent-encoded characters included), placed with random surroundings in every field and
 * copied manifest that takes a URL — declared through the API or loaded with Image.fromJSON — is refused
 * at declaration with a ValidationError about the credential, and the credential appears nowhere in
 * what comes back: message, hint, field, value, details, JSON. (A spec that was accepted would be
 * rendered by `kiln dockerfile`/`kiln explain`; none is.)
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { renderDockerfile } from "../src/dockerfile.js";
import { ValidationError } from "../src/errors.js";
import { Image } from "../src/image.js";

const RUNS = 800;

let dir: string;
let dockerfile: string;
let plainPyproject: string;
let plainUvLock: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "kiln-credential-property-"));
  dockerfile = join(dir, "Dockerfile");
  writeFileSync(dockerfile, "FROM busybox:1.36\nARG X\n");
  plainPyproject = join(dir, "pyproject.toml");
  writeFileSync(plainPyproject, '[project]\nname = "app"\nversion = "0"\n');
  plainUvLock = join(dir, "uv.lock");
  writeFileSync(plainUvLock, "version = 1\n");
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function project(files: Record<string, string>): string {
  const sub = join(dir, `p${n++}`);
  mkdirSync(sub);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(sub, name), text);
  return sub;
}

// ---- credential-bearing URLs ---------------------------------------------------------------------

const scheme = fc.oneof(
  fc.constantFrom("http", "https", "git+https", "git+http", "git+ssh", "ssh", "hg+https", "svn+https", "bzr+https", "ftp", "s3", "postgres", "HTTPS"),
  fc.stringMatching(/^[a-z][a-z0-9+.-]{0,8}$/),
);
/** Characters a userinfo may hold (RFC 3986 unreserved and sub-delims, no `$` which starts a reference),
 * plus percent-encoded ones. */
const secretUnit = fc.oneof(
  { arbitrary: fc.constantFrom(..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"), weight: 10 },
  { arbitrary: fc.constantFrom(..."-._~!&'()*+,;="), weight: 2 },
  { arbitrary: fc.constantFrom("%40", "%3A", "%2F", "%25", "%20", "%C3%A9", "%24"), weight: 2 },
);
const secret = fc.string({ unit: secretUnit, minLength: 10, maxLength: 30 }).filter((s) => /[A-Za-z0-9]{3}/.test(s));
const user = fc.constantFrom("user", "__token__", "oauth2", "git", "ci-bot", "x%40y");
const host = fc
  .tuple(fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/), fc.constantFrom("", ":8080", ".example.com", ".internal:443"))
  .map(([h, tail]) => `${h}${tail}`);
const path = fc.constantFrom("", "/", "/simple", "/pkg-1.0-py3-none-any.whl", "/o/repo.git@v1", "/x?token=1", "/#egg=x");

interface CredentialUrl {
  url: string;
  /** The part that must never come back. */
  secret: string;
  /** A user name alone (no password). */
  userOnly: boolean;
  scheme: string;
}
const credentialUrl: fc.Arbitrary<CredentialUrl> = fc.tuple(scheme, fc.boolean(), user, secret, host, path).map(([s, withPassword, u, sec, h, p]) => ({
  url: `${s}://${withPassword ? `${u}:${sec}` : sec}@${h}${p}`,
  secret: sec,
  userOnly: !withPassword,
  scheme: s,
}));

/** Text on either side of the URL inside a string field (never a character a URL could continue with
 * into another `@`). */
const before = fc.constantFrom("", " ", "x=", "echo ", "'", "(", "--opt=", "a,");
const after = fc.constantFrom("", " ", "'", ")", ";", " && true", "\tz", "/more");

// ---- where a URL can go ----------------------------------------------------------------------------

interface Placement {
  name: string;
  /** The field the error must name (a prefix of it, for fields that also carry file:line). */
  field: string;
  declare: (text: string) => unknown;
  /** node manifests accept an ssh login name (npm writes `git+ssh://git@…` into its own lockfile). */
  node?: boolean;
}

const base = () => Image.fromBase("python:3.12-slim");
const json = (edit: (j: Record<string, any>) => void) => (text: string) => {
  const j = base()
    .withPipPackages("rich", { indexUrl: "https://pypi.org/simple" })
    .withCommands("true")
    .withEnvVars({ A: "1" })
    .withLabels({ a: "b" })
    .toJSON() as Record<string, any>;
  edit.call(null, j);
  return Image.fromJSON(JSON.stringify(j).replaceAll("@@URL@@", JSON.stringify(text).slice(1, -1)));
};

const PLACEMENTS: Placement[] = [
  { name: "pip direct reference", field: "withPipPackages[0]", declare: (t) => base().withPipPackages(`pkg @ ${t}`) },
  { name: "pip bare URL", field: "withPipPackages[1]", declare: (t) => base().withPipPackages("rich", t) },
  { name: "indexUrl", field: "withPipPackages indexUrl", declare: (t) => base().withPipPackages("rich", { indexUrl: t }) },
  { name: "extraIndexUrls", field: "withPipPackages extraIndexUrls[0]", declare: (t) => base().withPipPackages("rich", { extraIndexUrls: [t] }) },
  { name: "find-links", field: "withPipPackages extraArgs[1]", declare: (t) => base().withPipPackages("rich", { extraArgs: ["--find-links", t] }) },
  {
    name: "requirements extraArgs",
    field: "withRequirements extraArgs[0]",
    declare: (t) => base().withRequirements(join(project({ "r.txt": "rich\n" }), "r.txt"), { extraArgs: [`-f${t}`] }),
  },
  {
    name: "uv project extraArgs",
    field: "withUvProject extraArgs[0]",
    declare: (t) => base().withUvProject({ pyproject: plainPyproject, uvLock: plainUvLock, extraArgs: [t] }),
  },
  {
    name: "requirements file line",
    field: "withRequirements (",
    declare: (t) => base().withRequirements(join(project({ "requirements.txt": `rich\n--extra-index-url ${t}\n` }), "requirements.txt")),
  },
  {
    name: "pyproject.toml",
    field: "withUvProject (",
    declare: (t) =>
      base().withUvProject({
        pyproject: join(project({ "pyproject.toml": `[tool.uv.sources]\nlib = { url = "${t.replaceAll('"', "")}" }\n` }), "pyproject.toml"),
        uvLock: plainUvLock,
      }),
  },
  {
    name: "uv.lock",
    field: "withUvProject (",
    declare: (t) =>
      base().withUvProject({
        pyproject: plainPyproject,
        uvLock: join(project({ "uv.lock": `version = 1\nsource = { url = "${t.replaceAll('"', "")}" }\n` }), "uv.lock"),
      }),
  },
  {
    name: "package.json dependency",
    field: "withNodeProject (",
    node: true,
    declare: (t) =>
      Image.fromNodeBase().withNodeProject(project({ "package.json": JSON.stringify({ name: "a", dependencies: { lib: t } }), "package-lock.json": "{}" })),
  },
  {
    name: "package-lock.json",
    field: "withNodeProject (",
    node: true,
    declare: (t) =>
      Image.fromNodeBase().withNodeProject(
        project({ "package.json": "{}", "package-lock.json": JSON.stringify({ packages: { "node_modules/lib": { resolved: t } } }) }),
      ),
  },
  {
    name: ".npmrc registry",
    field: "withNodeProject (",
    node: true,
    declare: (t) =>
      Image.fromNodeBase().withNodeProject(project({ "package.json": "{}", "pnpm-lock.yaml": "lockfileVersion: '9.0'\n", ".npmrc": `registry=${t}\n` })),
  },
  { name: "withCommands", field: "withCommands[0]", declare: (t) => base().withCommands(`curl -fsSL ${t} -o /tmp/x`) },
  { name: "withCommands with secrets", field: "withCommands[1]", declare: (t) => base().withCommands("true", `git clone ${t}`, { secrets: ["netrc"] }) },
  { name: "env value", field: "withEnvVars.URL", declare: (t) => base().withEnvVars({ URL: t }) },
  { name: "label value", field: "withLabels.org.opencontainers.image.source", declare: (t) => base().withLabels({ "org.opencontainers.image.source": t }) },
  { name: "build arg", field: "buildArgs.X", declare: (t) => Image.fromDockerfile(dockerfile, { buildArgs: { X: t } }) },
  { name: "fromJSON packages", field: "layers[0].packages[0]", declare: json((j) => (j.layers[0].packages = ["pkg @ @@URL@@"])) },
  { name: "fromJSON indexUrl", field: "layers[0] indexUrl", declare: json((j) => (j.layers[0].indexUrl = "@@URL@@")) },
  { name: "fromJSON extraArgs", field: "layers[0] extraArgs[0]", declare: json((j) => (j.layers[0].extraArgs = ["--find-links=@@URL@@"])) },
  { name: "fromJSON commands", field: "layers[1].commands[0]", declare: json((j) => (j.layers[1].commands = ["curl @@URL@@"])) },
  { name: "fromJSON env", field: "layers[2].vars[0] value", declare: json((j) => (j.layers[2].vars = [["A", "@@URL@@"]])) },
  { name: "fromJSON labels", field: "layers[3].labels[0] value", declare: json((j) => (j.layers[3].labels = [["a", "@@URL@@"]])) },
];

function decoded(text: string): string | undefined {
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
}

describe("no credential-bearing URL gets past declaration, nor back out in an error", () => {
  it("the placements are all reachable: each accepts the same URL without userinfo", () => {
    // Guards the property below: a placement that refused everything would prove nothing.
    for (const placement of PLACEMENTS) {
      const clean = placement.name === "pip bare URL" ? "pkg @ https://host/simple" : "https://host/simple";
      const image = placement.declare(clean) as Image;
      expect(Image.isImage(image), placement.name).toBe(true);
      renderDockerfile(image);
    }
  });

  it.each(PLACEMENTS.map((p) => [p.name, p] as const))("%s", (_name, placement) => {
    fc.assert(
      fc.property(credentialUrl, before, after, (cred, pre, post) => {
        // npm's own ssh login names are accepted in node manifests (see credentialFiles.ts).
        fc.pre(!(placement.node && cred.userOnly && /(?:^|\+)ssh(?:\+|$)/i.test(cred.scheme)));
        const text = `${pre}${cred.url}${post}`;
        let image: unknown;
        let error: unknown;
        try {
          image = placement.declare(text);
        } catch (e) {
          error = e;
        }
        if (image !== undefined) {
          // Accepted: it would render. Show what would have leaked, then fail.
          const outputs = [renderDockerfile(image as Image), JSON.stringify((image as Image).explain())];
          expect(
            outputs.some((o) => o.includes(cred.secret)),
            `rendered ${JSON.stringify(text)}`,
          ).toBe(false);
          expect.fail(`${placement.name} accepted ${JSON.stringify(text)}`);
        }
        expect(error, String(error)).toBeInstanceOf(ValidationError);
        const e = error as ValidationError;
        expect(e.field.startsWith(placement.field), `${e.field} for ${placement.name}`).toBe(true);
        expect(e.message).toMatch(/credential/);
        const shown = [e.message, e.hint ?? "", e.field, JSON.stringify(e.value), JSON.stringify(e.details ?? null), JSON.stringify(e.toJSON()), String(e)];
        const needles = [cred.secret, decoded(cred.secret)].filter((s): s is string => s !== undefined && s.length >= 8);
        for (const out of shown) for (const needle of needles) expect(out, `${placement.name}: ${JSON.stringify(text)}`).not.toContain(needle);
      }),
      { numRuns: placement.field.endsWith("(") ? RUNS / 5 : RUNS },
    );
  });
});
