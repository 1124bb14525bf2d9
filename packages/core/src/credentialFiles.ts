/**
 * Credentials in the manifests a layer copies into the image and installs from, found at declaration
 * (the `with*` methods, and `Image.fromJSON` for the files it can read): a requirements file, a uv
 * project's pyproject.toml and uv.lock, a node project's package.json dependencies, its lockfile and
 * — when it would be copied — its .npmrc. Each refusal is a ValidationError naming the file and the
 * line, with the credential masked (credentialUrls.ts detects; errors.ts masks).
 *
 * Requirements files are read as pip reads them (a line ending in `\` continues on the next) and
 * every line counts, comments included: the file itself is copied into the image. Nested `-r`/`-c`
 * files are not followed: only the named file is copied, so a nested one never reaches the image (and
 * cannot be installed from it); a nested include given as a URL is checked like any other URL.
 *
 * Node projects: npm records GitHub dependencies as `git+ssh://git@github.com/…` in its own lockfile,
 * so an ssh login name is not refused there (a password or token is). package.json is checked in its
 * dependency fields only (scripts may hold a local database URL the image never uses to install).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { findCredentialUrls, isVariableReference, maskCredentialUrls, type CredentialUrlOptions } from "./credentialUrls.js";
import { IgnoreMatcher } from "./dockerignore.js";
import { ValidationError } from "./errors.js";
import type { Layer } from "./layers.js";
import { credentialHint, credentialReason, type CredentialContext } from "./validate.js";
import { ignoreRulesForFolder } from "./walk.js";

export interface CredentialFileOptions {
  /** Skip files that cannot be read (`Image.fromJSON`: the spec may come from another machine). */
  missingOk?: boolean;
}

const NODE: CredentialUrlOptions = { allowSshLogin: true };
/** package.json fields whose values npm installs from (or that override what it installs). */
const DEPENDENCY_FIELDS = ["dependencies", "devDependencies", "optionalDependencies", "peerDependencies", "overrides", "resolutions"];
/** .npmrc keys that hold a secret (`//registry/:_authToken=…`, the legacy global `_auth=…`). */
const NPMRC_SECRET_KEY = /(?:^|:)_(?:authToken|auth|password)$/i;

/**
 * Refuses a layer whose copied manifests hold a credential. `earlier` are the layers declared before
 * it (their ignore rules decide whether a node project's .npmrc is copied).
 */
export function refuseCredentialsInLayerFiles(field: string, layer: Layer, earlier: readonly Layer[], options: CredentialFileOptions = {}): void {
  switch (layer.kind) {
    case "requirements":
      scanRequirements(field, layer.hostPath, options);
      break;
    case "uvProject":
      scanText(field, layer.pyprojectHostPath, "python", {}, options);
      scanText(field, layer.lockHostPath, "python", {}, options);
      break;
    case "nodeProject":
      scanNodeProject(field, layer.hostPath, layer.lockfile, earlier, options);
      break;
    default:
      break;
  }
}

function readText(path: string, options: CredentialFileOptions): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    if (options.missingOk) return undefined;
    throw error;
  }
}

const FILE_REASON = "contains a URL with credentials (user:password@ or token@), and this file is copied into the image";

function refuse(field: string, path: string, line: number, text: string, context: CredentialContext, reason = FILE_REASON): never {
  throw new ValidationError(`${field} (${path}:${line})`, maskCredentialUrls(text.trim()), reason, {
    hint: credentialHint(context),
    details: { file: path, line },
  });
}

/** 1-based line of `offset` and the text of that line. */
function lineAt(text: string, offset: number): { line: number; text: string } {
  let line = 1;
  for (let i = text.indexOf("\n"); i >= 0 && i < offset; i = text.indexOf("\n", i + 1)) line++;
  const start = text.lastIndexOf("\n", offset - 1) + 1;
  const end = text.indexOf("\n", offset);
  return { line, text: text.slice(start, end < 0 ? text.length : end) };
}

/** Any credential URL in the file's text, reported at its line. */
function scanText(
  field: string,
  path: string,
  context: CredentialContext,
  urlOptions: CredentialUrlOptions,
  options: CredentialFileOptions,
  json = false,
): void {
  const raw = readText(path, options);
  if (raw === undefined) return;
  // JSON may write `/` as `\/`: `https:\/\/user:pass@host` is the same URL to npm.
  const text = json ? raw.replace(/\\\//g, "/") : raw;
  const [found] = findCredentialUrls(text, urlOptions);
  if (found === undefined) return;
  const at = lineAt(text, found.start);
  refuse(field, path, at.line, at.text, context);
}

function scanRequirements(field: string, path: string, options: CredentialFileOptions): void {
  const text = readText(path, options);
  if (text === undefined) return;
  const lines = text.split("\n");
  let logical = "";
  let startLine = 0;
  lines.forEach((physical, i) => {
    if (logical === "") startLine = i + 1;
    const line = physical.replace(/\r$/, "");
    // pip joins a line ending in `\` with the next, so a URL may be split over both.
    if (line.endsWith("\\") && i < lines.length - 1) {
      logical += line.slice(0, -1);
      return;
    }
    logical += line;
    if (findCredentialUrls(logical).length > 0) refuse(field, path, startLine, logical, "python");
    logical = "";
  });
}

function scanNodeProject(field: string, dir: string, lockfile: string, earlier: readonly Layer[], options: CredentialFileOptions): void {
  scanPackageJson(field, join(dir, "package.json"), options);
  const lockPath = join(dir, lockfile);
  scanText(field, lockPath, "node", NODE, options, lockfile.endsWith(".json"));
  // The project folder is copied as the image's sources: its .npmrc too, unless the ignore rules drop it.
  const ignore = ignoreRulesForFolder({ layers: [...earlier] }, earlier.length, dir);
  if (!new IgnoreMatcher(ignore.patterns).matches(".npmrc")) scanNpmrc(field, join(dir, ".npmrc"));
}

function scanPackageJson(field: string, path: string, options: CredentialFileOptions): void {
  const raw = readText(path, options);
  if (raw === undefined) return;
  let manifest: unknown;
  try {
    manifest = JSON.parse(raw);
  } catch {
    return; // not JSON: npm refuses it at install time, with its own message
  }
  if (typeof manifest !== "object" || manifest === null) return;
  const check = (value: unknown, where: string, depth: number): void => {
    if (typeof value === "string") {
      if (findCredentialUrls(value, NODE).length === 0) return;
      const quoted = JSON.stringify(value);
      const offset = raw.indexOf(quoted);
      const line = offset < 0 ? 0 : lineAt(raw, offset).line;
      throw new ValidationError(`${field} (${path}${line > 0 ? `:${line}` : ""} ${where})`, maskCredentialUrls(value), credentialReason("node"), {
        hint: credentialHint("node"),
        details: { file: path, ...(line > 0 ? { line } : {}), field: where },
      });
    }
    if (depth < 8 && typeof value === "object" && value !== null && !Array.isArray(value)) {
      for (const [key, inner] of Object.entries(value)) check(inner, `${where}.${key}`, depth + 1);
    }
  };
  for (const section of DEPENDENCY_FIELDS) check((manifest as Record<string, unknown>)[section], section, 0);
  const pnpm = (manifest as Record<string, unknown>).pnpm;
  if (typeof pnpm === "object" && pnpm !== null) check((pnpm as Record<string, unknown>).overrides, "pnpm.overrides", 0);
}

/** An .npmrc that is copied into the image: no auth token, password or `_auth` value, no URL credentials.
 * A value that is only a `${VAR}` reference is fine: npm fills it in from the environment. */
function scanNpmrc(field: string, path: string): void {
  const text = readText(path, { missingOk: true });
  if (text === undefined) return;
  text.split("\n").forEach((physical, i) => {
    const line = physical.replace(/\r$/, "");
    const trimmed = line.trim();
    if (trimmed === "" || trimmed.startsWith("#") || trimmed.startsWith(";")) return;
    const eq = trimmed.indexOf("=");
    if (eq > 0) {
      const key = trimmed.slice(0, eq).trim();
      const value = trimmed
        .slice(eq + 1)
        .trim()
        .replace(/^(["'])(.*)\1$/, "$2");
      if (NPMRC_SECRET_KEY.test(key) && value !== "" && !isVariableReference(value)) {
        throw new ValidationError(`${field} (${path}:${i + 1})`, `${key}=***`, credentialReason("node"), {
          hint: credentialHint("node"),
          details: { file: path, line: i + 1 },
        });
      }
    }
    if (findCredentialUrls(line, NODE).length > 0) refuse(field, path, i + 1, line, "node");
  });
}
