/**
 * Build secrets in the spec: declaration and its validation, JSON round trips, resolving values at
 * build time, and redacting them.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { planDockerfile, renderDockerfile } from "../src/dockerfile.js";
import { BuildSecretsNeedBuildKitError, KilnError, MissingSecretError, ValidationError } from "../src/errors.js";
import { Image } from "../src/image.js";
import { redactBuildSecrets, redactErrorSecrets, redactEventSecrets, resolveBuildSecrets, secretIdsOf, secretRedactor } from "../src/secrets.js";
import type { BuildEvent } from "../src/events.js";
import { thrown } from "./thrown.js";

const base = () => Image.fromBase("busybox:1.36");

describe("withCommands(..., { secrets })", () => {
  it("stores ids and targets as declared; without secrets the layer has no secrets field", () => {
    const image = base().withCommands("npm whoami", "pip download rich", {
      secrets: ["NPM_TOKEN", { id: "pip_conf", target: "/root/.config/pip/pip.conf" }],
    });
    expect(image.layers).toEqual([
      {
        kind: "commands",
        commands: ["npm whoami", "pip download rich"],
        secrets: [{ id: "NPM_TOKEN" }, { id: "pip_conf", target: "/root/.config/pip/pip.conf" }],
      },
    ]);
    for (const plain of [base().withCommands("echo"), base().withCommands("echo", {}), base().withCommands("echo", { secrets: [] })]) {
      expect(plain.layers[0]).toEqual({ kind: "commands", commands: ["echo"] });
      expect("secrets" in plain.layers[0]!).toBe(false);
      expect(plain.tag).toBe(base().withCommands("echo").tag);
    }
    expect(image.tag).not.toBe(base().withCommands("npm whoami", "pip download rich").tag);
  });

  it.each([
    ["an id with a space", ["NPM TOKEN"], "withCommands secrets[0]", "NPM TOKEN"],
    ["an id starting with a digit", ["1TOKEN"], "withCommands secrets[0]", "1TOKEN"],
    ["an id with a comma", ["a,b"], "withCommands secrets[0]", "a,b"],
    ["an id with =", ["a=b"], "withCommands secrets[0]", "a=b"],
    ["an empty id", [""], "withCommands secrets[0]", ""],
    ["a 65-character id", ["A".repeat(65)], "withCommands secrets[0]", "A".repeat(65)],
    ["an object without id", [{ target: "/x" }], "withCommands secrets[0].id", undefined],
    ["a relative target", [{ id: "a", target: "root/.npmrc" }], "withCommands secrets[0].target", "root/.npmrc"],
    ["a target with a comma", [{ id: "a", target: "/a,uid=0" }], "withCommands secrets[0].target", "/a,uid=0"],
    ["a target with =", [{ id: "a", target: "/a=b" }], "withCommands secrets[0].target", "/a=b"],
    ["a target with a quote", [{ id: "a", target: '/a"b' }], "withCommands secrets[0].target", '/a"b'],
    ["a target with a space", [{ id: "a", target: "/my file" }], "withCommands secrets[0].target", "/my file"],
    ["a target with $", [{ id: "a", target: "/$HOME/x" }], "withCommands secrets[0].target", "/$HOME/x"],
    ["a target with ..", [{ id: "a", target: "/root/../etc/x" }], "withCommands secrets[0].target", "/root/../etc/x"],
    ["a directory target", [{ id: "a", target: "/root/" }], "withCommands secrets[0].target", "/root/"],
    ["a target with a newline", [{ id: "a", target: "/a\nRUN x" }], "withCommands secrets[0].target", "/a\nRUN x"],
    ["an unknown secret option", [{ id: "a", mode: 0o400 }], "withCommands secrets[0]", "mode"],
    ["a number", [42], "withCommands secrets[0]", 42],
    ["a duplicate id", ["A", { id: "A", target: "/x" }], "withCommands secrets[1]", "A"],
    [
      "two secrets at one target",
      [
        { id: "A", target: "/x" },
        { id: "B", target: "/x" },
      ],
      "withCommands secrets[1]",
      "/x",
    ],
    ["an explicit target equal to another's default", ["A", { id: "B", target: "/run/secrets/A" }], "withCommands secrets[1]", "/run/secrets/A"],
  ])("rejects %s with a ValidationError naming the field and value, with a hint", (_name, secrets, field, value) => {
    const error = thrown(() => base().withCommands("echo", { secrets: secrets as never }));
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).field).toBe(field);
    expect((error as ValidationError).value).toEqual(value);
    expect((error as ValidationError).hint).toBeTruthy();
  });

  it("rejects a non-list secrets value and unknown options", () => {
    expect((thrown(() => base().withCommands("echo", { secrets: "NPM_TOKEN" as never })) as ValidationError).field).toBe("withCommands secrets");
    expect((thrown(() => base().withCommands("echo", { secret: ["A"] } as never)) as ValidationError).value).toBe("secret");
    expect(thrown(() => base().withCommands({ secrets: ["A"] } as never))).toBeInstanceOf(ValidationError); // no command
  });

  it("accepts the documented forms: dotted and dashed ids, 64 characters, nested absolute targets", () => {
    const image = base().withCommands("true", {
      secrets: [
        "_a",
        "pip.conf",
        "api-key",
        "A".repeat(64),
        { id: "x", target: "/home/app/.config/pip/pip.conf" },
        { id: "y", target: "/run/secrets/y@v1+~:2" },
      ],
    });
    expect(secretIdsOf(image)).toEqual(["_a", "pip.conf", "api-key", "A".repeat(64), "x", "y"]);
  });
});

describe("JSON", () => {
  it("round trips secrets, and a spec without them has no secrets key", () => {
    const image = base()
      .withCommands("a", { secrets: ["NPM_TOKEN", { id: "pip_conf", target: "/root/.config/pip/pip.conf" }] })
      .withCommands("b");
    const json = JSON.parse(JSON.stringify(image.toJSON()));
    expect(json.layers[1]).toEqual({ kind: "commands", commands: ["b"] });
    const back = Image.fromJSON(json);
    expect(back.toJSON()).toEqual(image.toJSON());
    expect(back.tag).toBe(image.tag);
  });

  it("fromJSON validates secrets like the declaration does", () => {
    const json = base()
      .withCommands("a", { secrets: ["NPM_TOKEN"] })
      .toJSON() as unknown as { layers: Array<Record<string, unknown>> };
    const withSecrets = (secrets: unknown) => ({ ...json, layers: [{ kind: "commands", commands: ["a"], secrets }] });
    const cases: Array<[unknown, string]> = [
      [[{ id: "bad id" }], "layers[0].secrets[0].id"],
      [[{ id: "a", target: "/x,y" }], "layers[0].secrets[0].target"],
      [[{ id: "a" }, { id: "a" }], "layers[0].secrets[1]"],
      ["NPM_TOKEN", "layers[0].secrets"],
      [[{ id: "a", extra: 1 }], "layers[0].secrets[0]"],
    ];
    for (const [secrets, field] of cases) {
      const error = thrown(() => Image.fromJSON(withSecrets(secrets)));
      expect(error, JSON.stringify(secrets)).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).field).toBe(field);
    }
    // An empty list loads as "no secrets" (same tag as none).
    expect(Image.fromJSON(withSecrets([])).tag).toBe(base().withCommands("a").tag);
  });
});

describe("secretIdsOf and resolveBuildSecrets", () => {
  const image = base()
    .withCommands("a", { secrets: ["NPM_TOKEN", { id: "pip_conf", target: "/root/.config/pip/pip.conf" }] })
    .withAptPackages("git")
    .withCommands("b", { secrets: [{ id: "NPM_TOKEN", target: "/root/.npmrc-token" }, "api.key"] });

  it("lists every declared id once, in order", () => {
    expect(secretIdsOf(image)).toEqual(["NPM_TOKEN", "pip_conf", "api.key"]);
    expect(secretIdsOf(image.spec)).toEqual(["NPM_TOKEN", "pip_conf", "api.key"]);
    expect(secretIdsOf(base().withCommands("x"))).toEqual([]);
  });

  it("takes provided values first, then the environment variable of the id; extra ids are ignored", () => {
    const env = { NPM_TOKEN: "from-env-npm", pip_conf: "[global]\nindex-url = https://u:p@h/simple\n", "api.key": "from-env-api" };
    const resolved = resolveBuildSecrets(image, { NPM_TOKEN: "provided-npm", UNRELATED: "x" }, env);
    expect([...resolved]).toEqual([
      ["NPM_TOKEN", "provided-npm"],
      ["pip_conf", env.pip_conf],
      ["api.key", "from-env-api"],
    ]);
    expect(resolveBuildSecrets(base().withCommands("x"), undefined, {}).size).toBe(0);
  });

  it("names every missing id (not set, empty) in one MissingSecretError with a hint, never a value", () => {
    const error = thrown(() => resolveBuildSecrets(image, { NPM_TOKEN: "s3cr3t-provided", pip_conf: "" }, { "api.key": undefined, OTHER: "s3cr3t-env" }));
    expect(error).toBeInstanceOf(MissingSecretError);
    expect(MissingSecretError.isInstance(error)).toBe(true);
    const e = error as MissingSecretError;
    expect(e.code).toBe("KILN_MISSING_SECRET");
    expect(e.message).toBe("Build secrets without a value: pip_conf (empty), api.key (not set)");
    expect(e.details).toEqual({ missing: ["pip_conf", "api.key"] });
    expect(e.hint).toContain("pass { secrets: { pip_conf: value } } to build()");
    expect(e.hint).toContain("--secret id=pip_conf,env=VAR");
    expect(e.hint).toContain("set the environment variable pip_conf");
    expect(JSON.stringify(e.toJSON())).not.toMatch(/s3cr3t/);
  });

  it("reads own properties only (an id like `constructor` is not Object.prototype's) and rejects a non-object map", () => {
    const proto = base().withCommands("x", { secrets: ["constructor", "toString"] });
    expect(MissingSecretError.isInstance(thrown(() => resolveBuildSecrets(proto, {}, {})))).toBe(true);
    expect(resolveBuildSecrets(proto, { constructor: "c-value", toString: "t-value" } as Record<string, string>, {}).get("constructor")).toBe("c-value");
    const error = thrown(() => resolveBuildSecrets(image, "the-token-itself" as never, {}));
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as Error).message).not.toContain("the-token-itself");
  });
});

describe("redacting secret values", () => {
  it("replaces every value, each line of a multi-line value, and a value with its trailing newline", () => {
    const values = ["tok-123456", "[global]\nindex-url = https://u:p4ss@h/simple\n", "filetoken\n"];
    // The lines of pip_conf are echoed in another order, so only line-wise matching finds them.
    const text = "echo tok-123456; cat pip.conf:\nindex-url = https://u:p4ss@h/simple\n[global]\ntoken filetoken!";
    const clean = redactBuildSecrets(text, values);
    expect(clean).toBe("echo ***; cat pip.conf:\n***\n***\ntoken ***!");
    expect(redactBuildSecrets(`a${values[1]}b`, values)).toBe("a***b");
    // Values of one or two characters are not scrubbed (they would garble every log line).
    expect(redactBuildSecrets("a b ab", ["a", "ab"])).toBe("a b ab");
    // The longer of two overlapping values is replaced whole.
    expect(redactBuildSecrets("secret-long", ["secret", "secret-long"])).toBe("***");
  });

  it("events: every string field; errors: message, stack, hint, details and the cause chain", () => {
    const redact = secretRedactor(["hunter2-value"]);
    const event = redactEventSecrets({ type: "build.log", image: "x", line: "pw hunter2-value", step: "RUN hunter2-value", time: 1 } as BuildEvent, redact);
    expect(event).toEqual({ type: "build.log", image: "x", line: "pw ***", step: "RUN ***", time: 1 });
    const cause = new Error("inner hunter2-value");
    const error = new KilnError("outer hunter2-value", { hint: "hint hunter2-value", details: { tail: ["log hunter2-value"], n: 1 }, cause });
    expect(redactErrorSecrets(error, redact)).toBe(error);
    const text = JSON.stringify({ ...error.toJSON(), stack: error.stack, cause: cause.message, causeStack: cause.stack });
    expect(text).not.toContain("hunter2-value");
    expect(error.details).toEqual({ tail: ["log ***"], n: 1 });
  });
});

describe("fromDockerfile({ secrets }): the Dockerfile's own secret mounts", () => {
  const dir = mkdtempSync(join(tmpdir(), "kiln-dockerfile-secrets-"));
  const dockerfile = join(dir, "Dockerfile");
  writeFileSync(dockerfile, "FROM busybox:1.36\nRUN --mount=type=secret,id=NPM_TOKEN,required=true cat /run/secrets/NPM_TOKEN >/dev/null\n");
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("declares ids that resolve like withCommands' (values from the call or the environment)", () => {
    const image = Image.fromDockerfile(dockerfile, { secrets: ["NPM_TOKEN"] }).withCommands("true", { secrets: ["OTHER"] });
    expect(image.spec.base).toMatchObject({ kind: "dockerfile", secrets: ["NPM_TOKEN"] });
    expect(secretIdsOf(image)).toEqual(["NPM_TOKEN", "OTHER"]);
    expect([...resolveBuildSecrets(image, { NPM_TOKEN: "a-value" }, { OTHER: "b-value" })]).toEqual([
      ["NPM_TOKEN", "a-value"],
      ["OTHER", "b-value"],
    ]);
    const missing = thrown(() => resolveBuildSecrets(image, {}, {}));
    expect(MissingSecretError.isInstance(missing)).toBe(true);
    expect((missing as Error).message).toContain("NPM_TOKEN");
  });

  it("ids are validated and round-trip through JSON; none is no field; the tag covers ids, not values", () => {
    expect(thrown(() => Image.fromDockerfile(dockerfile, { secrets: ["bad id"] }))).toBeInstanceOf(ValidationError);
    expect(thrown(() => Image.fromDockerfile(dockerfile, { secrets: ["A", "A"] }))).toBeInstanceOf(ValidationError);
    expect(thrown(() => Image.fromDockerfile(dockerfile, { secrets: "NPM_TOKEN" as never }))).toBeInstanceOf(ValidationError);
    const image = Image.fromDockerfile(dockerfile, { secrets: ["NPM_TOKEN"] });
    expect(Image.fromJSON(JSON.parse(JSON.stringify(image.toJSON()))).spec.base).toEqual(image.spec.base);
    expect(thrown(() => Image.fromJSON({ ...image.toJSON(), base: { ...image.spec.base, secrets: ["$(x)"] } }))).toBeInstanceOf(ValidationError);
    const plain = Image.fromDockerfile(dockerfile);
    expect("secrets" in plain.spec.base).toBe(false);
    expect("secrets" in Image.fromDockerfile(dockerfile, { secrets: [] }).spec.base).toBe(false);
    expect(image.tag).not.toBe(plain.tag);
    expect(Image.fromDockerfile(dockerfile, { secrets: ["OTHER"] }).tag).not.toBe(image.tag);
    expect(JSON.stringify(image.explain())).toContain("NPM_TOKEN");
  });

  it("the classic builder's rendering refuses it (with or without Kiln layers); BuildKit's is the file as written", () => {
    const image = Image.fromDockerfile(dockerfile, { secrets: ["NPM_TOKEN"] });
    for (const candidate of [image, image.withEnvVars({ A: "1" })]) {
      const error = thrown(() => renderDockerfile(candidate, { buildkit: false }));
      expect(BuildSecretsNeedBuildKitError.isInstance(error), String(error)).toBe(true);
      expect(thrown(() => planDockerfile(candidate, { buildkit: false }))).toBeInstanceOf(BuildSecretsNeedBuildKitError);
    }
    expect(renderDockerfile(image)).toBe(readFileSync(dockerfile, "utf8"));
  });
});
