/**
 * `kiln build --secret`, in-process: the flag parser, reading values from env vars and files, and
 * the build command end to end with a registered fake builder (values reach it, never the output).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { BuildImageOptions, ImageBuild, ImageBuilder } from "../src/builder.js";
import { UsageError } from "../src/cli/args.js";
import { run as runBuildCommand } from "../src/cli/commands/build.js";
import { COMMAND_HELP } from "../src/cli/help.js";
import { exitCodeFor, printError, type CommandContext } from "../src/cli/run.js";
import { parseSecretFlag, readSecretFlags } from "../src/cli/secrets.js";
import { init } from "../src/engine.js";
import { MissingSecretError } from "../src/errors.js";
import { Image } from "../src/image.js";
import { resolveBuildSecrets } from "../src/secrets.js";
import { registerImageBuilder, unregisterImageBuilder } from "../src/selection.js";
import { thrown } from "./thrown.js";

let dir: string;
const savedLockDir = process.env.KILN_LOCK_DIR;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "kiln-secrets-cli-"));
  process.env.KILN_LOCK_DIR = join(dir, "locks");
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  if (savedLockDir === undefined) delete process.env.KILN_LOCK_DIR;
  else process.env.KILN_LOCK_DIR = savedLockDir;
});

describe("parseSecretFlag (docker's --secret syntax)", () => {
  it("id alone reads the env var of that name; env= another; src=/source= a file relative to the cwd; type= is accepted", () => {
    expect(parseSecretFlag("id=NPM_TOKEN", "/w")).toEqual({ id: "NPM_TOKEN", source: { kind: "env", name: "NPM_TOKEN" } });
    expect(parseSecretFlag("id=npm,env=CI_NPM_TOKEN", "/w")).toEqual({ id: "npm", source: { kind: "env", name: "CI_NPM_TOKEN" } });
    expect(parseSecretFlag("id=pip.conf,src=conf/pip.conf", "/w")).toEqual({ id: "pip.conf", source: { kind: "file", path: "/w/conf/pip.conf" } });
    expect(parseSecretFlag("source=/etc/x,id=x", "/w")).toEqual({ id: "x", source: { kind: "file", path: "/etc/x" } });
    expect(parseSecretFlag("type=env,id=T", "/w")).toEqual({ id: "T", source: { kind: "env", name: "T" } });
    expect(parseSecretFlag("type=file,id=T,src=t", "/w")).toEqual({ id: "T", source: { kind: "file", path: "/w/t" } });
  });

  it.each([
    ["NPM_TOKEN", "expected comma-separated key=value pairs"],
    ["src=/x", "no id"],
    ["id=", "id is empty"],
    ["id=1BAD", "the id is not a secret id"],
    ["id=a b", "the id is not a secret id"],
    ["id=A,env=X,src=/y", "not both"],
    ["id=A,id=B", "given twice"],
    ["id=A,mode=0400", "unknown key"],
    ["id=A,type=ssh", "type must be file or env"],
    ["id=A,type=file", "type=file needs src=PATH"],
    ["id=A,type=env,src=/x", "contradicts src"],
  ])("%s is a usage error (exit 2) with a hint", (flag, message) => {
    const error = thrown(() => parseSecretFlag(flag));
    expect(error).toBeInstanceOf(UsageError);
    expect((error as UsageError).message).toContain(message);
    expect((error as UsageError).hint).toBeTruthy();
    expect(exitCodeFor(error, new AbortController().signal)).toBe(2);
  });

  it.each([
    ["NPM_TOKEN=npm_abcdefSECRET"],
    ["id=A,value=npm_abcdefSECRET"],
    ["npm_abcdefSECRET"],
    ["id=npm_abcdefSECRET!"],
    ["id=A,npm_abcdefSECRET=1"],
    ["id=A,env=X,src=npm_abcdefSECRET"],
  ])("a mistyped flag is never echoed (it may hold the value): %s", (flag) => {
    const error = thrown(() => parseSecretFlag(flag)) as UsageError;
    expect(error).toBeInstanceOf(UsageError);
    expect(`${error.message} ${error.hint}`).not.toMatch(/abcdefSECRET/i);
  });
});

describe("readSecretFlags", () => {
  it("a file that is not UTF-8 text is a MissingSecretError naming the id, not the path or its bytes", () => {
    const file = join(dir, "binary.der");
    writeFileSync(file, Buffer.from([0x30, 0x82, 0xff, 0xfe, 0x00, 0x41]));
    const error = thrown(() => readSecretFlags([`id=CERT,src=${file}`], {}, dir));
    expect(MissingSecretError.isInstance(error)).toBe(true);
    expect((error as Error).message).toContain("--secret CERT: the src= file is not UTF-8");
    expect((error as Error).message).not.toContain(file);
  });

  it("reads env vars and whole files; no flags gives undefined", () => {
    writeFileSync(join(dir, "pip.conf"), "[global]\nindex-url = https://u:filepass@h/simple\n");
    const env = { NPM_TOKEN: "env-npm-value", CI_OTHER: "other-value" };
    expect(readSecretFlags(["id=NPM_TOKEN", "id=other,env=CI_OTHER", "id=pip_conf,src=pip.conf"], env, dir)).toEqual({
      NPM_TOKEN: "env-npm-value",
      other: "other-value",
      pip_conf: "[global]\nindex-url = https://u:filepass@h/simple\n",
    });
    expect(readSecretFlags(undefined, env, dir)).toBeUndefined();
    expect(readSecretFlags([], env, dir)).toBeUndefined();
  });

  it("an unset or empty variable, an unreadable or empty file: MissingSecretError naming the id, never the env= or src= text; a repeated id: usage error", () => {
    writeFileSync(join(dir, "empty"), "");
    const cases: Array<[string, string]> = [
      ["id=A", "the environment variable A is not set"],
      ["id=A,env=EMPTY", "the environment variable named by env= is empty"],
      ["id=A,src=missing.txt", "cannot read the src= file (ENOENT)"],
      ["id=A,src=.", "cannot read the src= file (EISDIR)"],
      ["id=A,src=empty", "the src= file is empty"],
      // The shell filled the value in where a name or path belongs: never echoed.
      ["id=A,env=npm_AbC123SECRETvalue", "the environment variable named by env= is not set"],
      ["id=A,src=npm_AbC123SECRETvalue", "cannot read the src= file (ENOENT)"],
    ];
    for (const [flag, message] of cases) {
      const error = thrown(() => readSecretFlags([flag], { EMPTY: "", OTHER: "value-not-shown" }, dir));
      expect(MissingSecretError.isInstance(error), flag).toBe(true);
      expect((error as MissingSecretError).message).toContain(message);
      expect((error as MissingSecretError).hint).toBeTruthy();
      expect(
        JSON.stringify({ m: (error as MissingSecretError).message, h: (error as MissingSecretError).hint, d: (error as MissingSecretError).details }),
      ).not.toMatch(/AbC123SECRET|missing\.txt/);
      expect(exitCodeFor(error, new AbortController().signal)).toBe(2);
    }
    expect(thrown(() => readSecretFlags(["id=A", "id=A,env=B"], { A: "a", B: "b" }, dir))).toBeInstanceOf(UsageError);
  });

  it("kiln build --help documents --secret", () => {
    expect(COMMAND_HELP.build).toContain("--secret <spec>");
    expect(COMMAND_HELP.build).toContain("id=ID,src=PATH");
    expect(COMMAND_HELP.build).toContain("id=ID,env=VAR");
  });
});

// ---- the build command, in-process -------------------------------------------------------------

const FILE_VALUE = "file-secret-Zq8w7e6r\n";
const ENV_VALUE = "env-secret-Pl0k9j8h";

class Collect extends Writable {
  text = "";
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString();
    callback();
  }
}

/** Echoes every secret into the build log, then succeeds (or fails quoting them). */
class EchoBuilder implements ImageBuilder {
  received: Array<BuildImageOptions["secrets"]> = [];
  fail = false;
  async buildImage(image: Image, options: BuildImageOptions): Promise<ImageBuild> {
    this.received.push(options.secrets);
    const values = [...resolveBuildSecrets(image, options.secrets).values()];
    for (const value of values) options.onEvent?.({ type: "build.log", image: image.uri, line: `printed ${value.trim()}`, time: Date.now() });
    if (this.fail) throw new Error(`RUN failed after printing ${values.join(", ")}`);
    return { uri: image.uri };
  }
}

describe("kiln build --secret (in-process)", () => {
  const builder = new EchoBuilder();
  let spec: string;
  let project: string;

  beforeAll(() => {
    project = join(dir, "project");
    writeFileSync(join(dir, "token.txt"), FILE_VALUE);
    const image = Image.fromBase("kiln-test/busybox:1.35", { registry: "localhost:5000", name: "secrets-cli" })
      .withEnvVars({ RUN: `${process.pid}-${Date.now()}` })
      .withCommands("cat /run/secrets/NPM_TOKEN /root/.pip-token", { secrets: ["NPM_TOKEN", { id: "pip", target: "/root/.pip-token" }] });
    // A spec module exporting an Image from "another copy of @kiln/core": recognised by its marker, rebuilt from JSON.
    spec = join(dir, "images.mjs");
    writeFileSync(spec, `export const api = { [Symbol.for("kiln.image")]: true, toJSON: () => (${JSON.stringify(image.toJSON())}) };\n`);
    registerImageBuilder("secrets_cli_echo", builder);
    init({ projectDir: project });
  });
  afterAll(() => {
    unregisterImageBuilder("secrets_cli_echo");
    init({});
  });
  afterEach(() => {
    delete process.env.KILN_TEST_CLI_TOKEN;
    builder.received = [];
    builder.fail = false;
  });

  async function kilnBuild(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const stdout = new Collect();
    const stderr = new Collect();
    const context = { signal: new AbortController().signal, stdout, stderr, interactive: false, json: args.includes("--json") } as unknown as CommandContext;
    let code: number;
    try {
      code = await runBuildCommand(args, context);
    } catch (error) {
      // What runCommand does with an error thrown by a command.
      code = exitCodeFor(error, context.signal);
      printError(error, context, code);
    }
    return { code, stdout: stdout.text, stderr: stderr.text };
  }

  it("values from a file and an env var reach the builder; stdout, stderr and --json events never show them", async () => {
    process.env.KILN_TEST_CLI_TOKEN = ENV_VALUE;
    for (const json of [false, true]) {
      const result = await kilnBuild([
        spec,
        "--builder",
        "secrets_cli_echo",
        "--project",
        project,
        "--force",
        "--secret",
        "id=NPM_TOKEN,env=KILN_TEST_CLI_TOKEN",
        "--secret",
        `id=pip,src=${join(dir, "token.txt")}`,
        ...(json ? ["--json"] : []),
      ]);
      expect(result.stderr).not.toContain("kiln:");
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/^localhost:5000\/secrets-cli:[0-9a-f]{32}\n$/);
      const output = result.stdout + result.stderr;
      expect(output).not.toContain(ENV_VALUE);
      expect(output).not.toContain(FILE_VALUE.trim());
      if (json) expect(result.stderr).toContain('"line":"printed ***"');
    }
    expect(builder.received).toEqual([
      { NPM_TOKEN: ENV_VALUE, pip: FILE_VALUE },
      { NPM_TOKEN: ENV_VALUE, pip: FILE_VALUE },
    ]);
  });

  it("a failing build quoting the values exits 1 without them", async () => {
    builder.fail = true;
    const result = await kilnBuild([
      spec,
      "--builder",
      "secrets_cli_echo",
      "--project",
      project,
      "--force",
      "--secret",
      `id=NPM_TOKEN,src=${join(dir, "token.txt")}`,
      "--secret",
      `id=pip,src=${join(dir, "token.txt")}`,
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("RUN failed after printing ***");
    expect(result.stderr).not.toContain(FILE_VALUE.trim());
  });

  it("a secret neither passed nor in the environment: exit 2 naming the id; a missing src file: exit 2 naming the id, not the path", async () => {
    const missing = await kilnBuild([
      spec,
      "--builder",
      "secrets_cli_echo",
      "--project",
      project,
      "--force",
      "--secret",
      `id=pip,src=${join(dir, "token.txt")}`,
    ]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("kiln: Build secret without a value: NPM_TOKEN (not set)");
    expect(missing.stderr).toContain("hint: pass { secrets: { NPM_TOKEN: value } }");
    expect(missing.stderr).not.toContain(FILE_VALUE.trim());
    const noFile = await kilnBuild([spec, "--builder", "secrets_cli_echo", "--project", project, "--secret", `id=pip,src=${join(dir, "nope.txt")}`]);
    expect(noFile.code).toBe(2);
    expect(noFile.stderr).toContain("--secret pip: cannot read the src= file (ENOENT)");
    expect(noFile.stderr).not.toContain("nope.txt");
    const badFlag = await kilnBuild([spec, "--secret", "NPM_TOKEN"]);
    expect(badFlag.code).toBe(2);
    expect(badFlag.stderr).toContain("hint:");
    expect(builder.received).toEqual([]);
  });

  it("--dry-run needs no secret values", async () => {
    const result = await kilnBuild([spec, "--builder", "secrets_cli_echo", "--project", project, "--dry-run"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/secrets-cli:[0-9a-f]{32}/);
    expect(builder.received).toEqual([]);
  });
});
