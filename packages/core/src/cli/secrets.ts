/**
 * `kiln build --secret id=ID[,env=VAR|,src=PATH]`, docker build's syntax: `src`/`source` reads the
 * file's contents, `env` that environment variable, neither the environment variable ID (`type=file`
 * / `type=env` are accepted as in docker). Values are read here, once; messages name ids, variables
 * and paths, never contents — and never repeat the flag itself: a mistyped one may hold the value
 * (`--secret NPM_TOKEN=npm_…`).
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { describeValue, MissingSecretError } from "../errors.js";
import { SECRET_ID_PATTERN } from "../validate.js";
import { UsageError } from "./args.js";

export interface SecretFlag {
  id: string;
  /** Where the value comes from: a file (absolute path) or an environment variable. */
  source: { kind: "file"; path: string } | { kind: "env"; name: string };
}

const HINT = "use --secret id=ID (env var ID), --secret id=ID,env=VAR or --secret id=ID,src=PATH";

/** One `--secret` value → its id and source. Bad syntax is a UsageError (exit 2). */
export function parseSecretFlag(flag: string, cwd = process.cwd()): SecretFlag {
  const fields = new Map<string, string>();
  for (const part of flag.split(",")) {
    const eq = part.indexOf("=");
    if (eq <= 0) throw new UsageError("Invalid --secret: expected comma-separated key=value pairs (id=…, env=… or src=…)", { hint: HINT });
    const key = part.slice(0, eq).trim().toLowerCase();
    const value = part.slice(eq + 1);
    const name = key === "source" ? "src" : key;
    if (!["id", "env", "src", "type"].includes(name)) {
      // The key is not shown: in a mistyped flag it may be the value itself.
      throw new UsageError("Invalid --secret: unknown key (the keys are id, env, src/source and type)", { hint: HINT });
    }
    if (fields.has(name)) throw new UsageError(`Invalid --secret: ${name} given twice`, { hint: HINT });
    if (value === "") throw new UsageError(`Invalid --secret: ${name} is empty`, { hint: HINT });
    fields.set(name, value);
  }
  const id = fields.get("id");
  if (id === undefined) throw new UsageError("Invalid --secret: no id=", { hint: HINT });
  if (!SECRET_ID_PATTERN.test(id)) {
    throw new UsageError("Invalid --secret: the id is not a secret id (1-64 letters, digits, `_`, `.` and `-`, starting with a letter or `_`)", {
      hint: "use the id the image declares in withCommands(..., { secrets })",
    });
  }
  const type = fields.get("type");
  if (type !== undefined && type !== "file" && type !== "env") {
    throw new UsageError(`Invalid --secret ${id}: type must be file or env`, { hint: HINT });
  }
  const env = fields.get("env");
  const src = fields.get("src");
  if (env !== undefined && src !== undefined) {
    throw new UsageError(`Invalid --secret ${id}: give env or src, not both`, { hint: HINT });
  }
  if ((type === "file" && env !== undefined) || (type === "env" && src !== undefined)) {
    throw new UsageError(`Invalid --secret ${id}: type=${type} contradicts ${env !== undefined ? "env" : "src"}`, { hint: HINT });
  }
  if (src !== undefined) return { id, source: { kind: "file", path: resolve(cwd, src) } };
  if (type === "file") throw new UsageError(`Invalid --secret ${id}: type=file needs src=PATH`, { hint: HINT });
  return { id, source: { kind: "env", name: env ?? id } };
}

/**
 * Every `--secret` flag read into `{ id: value }` for `build(image, { secrets })`. An unset or empty
 * variable, or an unreadable file, is a MissingSecretError naming it (you asked for it on the command
 * line); an id given twice is a UsageError.
 */
export function readSecretFlags(
  flags: readonly string[] | undefined,
  env: Readonly<Record<string, string | undefined>> = process.env,
  cwd = process.cwd(),
): Record<string, string> | undefined {
  if (flags === undefined || flags.length === 0) return undefined;
  const secrets: Record<string, string> = {};
  for (const flag of flags) {
    const { id, source } = parseSecretFlag(flag, cwd);
    if (Object.hasOwn(secrets, id)) throw new UsageError(`--secret id ${describeValue(id)} is given twice`, { hint: "pass each secret once" });
    secrets[id] = readSource(id, source, env);
  }
  return secrets;
}

function readSource(id: string, source: SecretFlag["source"], env: Readonly<Record<string, string | undefined>>): string {
  // The variable name and the path are not shown: `env=$TOKEN` / `src=$TOKEN` (the shell filling in
  // the value) is the likely mistake. Only the id (validated) is named; `env` means the id's own name.
  if (source.kind === "env") {
    const value = Object.hasOwn(env, source.name) ? env[source.name] : undefined;
    if (value === undefined || value === "") {
      const which = source.name === id ? `the environment variable ${id}` : "the environment variable named by env=";
      throw new MissingSecretError(`--secret ${id}: ${which} is ${value === undefined ? "not set" : "empty"}`, {
        hint: `check the env= name (a variable's NAME, not its value: env=NPM_TOKEN, not env=$NPM_TOKEN), or pass --secret id=${id},src=PATH`,
        details: { id },
      });
    }
    return value;
  }
  let bytes: Buffer;
  try {
    bytes = readFileSync(source.path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException)?.code;
    throw new MissingSecretError(`--secret ${id}: cannot read the src= file${code ? ` (${code})` : ""}`, {
      hint: "check the src= path (a file's path, not the value; relative paths are resolved against the current directory) and its permissions",
      details: { id },
    });
  }
  let value: string;
  try {
    // Secret values are text end to end; a binary file would be silently mangled into U+FFFD.
    value = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new MissingSecretError(`--secret ${id}: the src= file is not UTF-8 text`, {
      hint: "build secrets are text; base64-encode a binary file and decode it in the RUN step",
      details: { id },
    });
  }
  if (value === "") {
    throw new MissingSecretError(`--secret ${id}: the src= file is empty`, { hint: "put the secret value in the file", details: { id } });
  }
  return value;
}
