/**
 * `kiln build --secret id=ID[,env=VAR|,src=PATH]`, docker build's syntax: `src`/`source` reads the
 * file's contents, `env` that environment variable, neither the environment variable ID (`type=file`
 * / `type=env` are accepted as in docker). Values are read here, once; messages name ids, variables
 * and paths, never contents.
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
    if (eq <= 0) throw new UsageError(`Invalid --secret ${describeValue(flag)}: expected key=value pairs, got ${describeValue(part)}`, { hint: HINT });
    const key = part.slice(0, eq).trim().toLowerCase();
    const value = part.slice(eq + 1);
    const name = key === "source" ? "src" : key;
    if (!["id", "env", "src", "type"].includes(name)) {
      throw new UsageError(`Invalid --secret ${describeValue(flag)}: unknown key ${describeValue(key)}`, { hint: `${HINT} (keys: id, env, src/source, type)` });
    }
    if (fields.has(name)) throw new UsageError(`Invalid --secret ${describeValue(flag)}: ${key} given twice`, { hint: HINT });
    if (value === "") throw new UsageError(`Invalid --secret ${describeValue(flag)}: ${key} is empty`, { hint: HINT });
    fields.set(name, value);
  }
  const id = fields.get("id");
  if (id === undefined) throw new UsageError(`Invalid --secret ${describeValue(flag)}: no id`, { hint: HINT });
  if (!SECRET_ID_PATTERN.test(id)) {
    throw new UsageError(`Invalid --secret id ${describeValue(id)}: secret ids are 1-64 letters, digits, \`_\`, \`.\` and \`-\`, starting with a letter or \`_\``, {
      hint: "use the id the image declares in withCommands(..., { secrets })",
    });
  }
  const type = fields.get("type");
  if (type !== undefined && type !== "file" && type !== "env") {
    throw new UsageError(`Invalid --secret ${describeValue(flag)}: type must be file or env`, { hint: HINT });
  }
  const env = fields.get("env");
  const src = fields.get("src");
  if (env !== undefined && src !== undefined) {
    throw new UsageError(`Invalid --secret ${describeValue(flag)}: give env or src, not both`, { hint: HINT });
  }
  if ((type === "file" && env !== undefined) || (type === "env" && src !== undefined)) {
    throw new UsageError(`Invalid --secret ${describeValue(flag)}: type=${type} contradicts ${env !== undefined ? "env" : "src"}`, { hint: HINT });
  }
  if (src !== undefined) return { id, source: { kind: "file", path: resolve(cwd, src) } };
  if (type === "file") throw new UsageError(`Invalid --secret ${describeValue(flag)}: type=file needs src=PATH`, { hint: HINT });
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
  if (source.kind === "env") {
    const value = Object.hasOwn(env, source.name) ? env[source.name] : undefined;
    if (value === undefined || value === "") {
      throw new MissingSecretError(`--secret ${id}: the environment variable ${source.name} is ${value === undefined ? "not set" : "empty"}`, {
        hint: `set ${source.name}, or pass --secret id=${id},src=PATH to read the value from a file`,
        details: { id, env: source.name },
      });
    }
    return value;
  }
  let value: string;
  try {
    value = readFileSync(source.path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException)?.code;
    throw new MissingSecretError(`--secret ${id}: cannot read ${source.path}${code ? ` (${code})` : ""}`, {
      hint: "check the src= path (relative paths are resolved against the current directory) and its permissions",
      details: { id, path: source.path },
    });
  }
  if (value === "") {
    throw new MissingSecretError(`--secret ${id}: ${source.path} is empty`, { hint: "put the secret value in the file", details: { id, path: source.path } });
  }
  return value;
}
