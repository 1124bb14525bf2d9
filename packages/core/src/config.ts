/**
 * Project configuration. Two places, both optional, read without running any code:
 *
 *   1. `kiln.config.json` in the project directory — wins key by key;
 *   2. the `kiln` field of the project's own package.json.
 *
 * Keys: `imageBuilder` (a builder name), `imageRegistry` (registry host[:port][/namespace]),
 * `strict` (boolean), `lockProvider` (a lock provider name; "file" is the per-host default),
 * `checkCache` (a check cache name; "none" is the default), `imageCheckers` (checker names, in
 * order; in package.json a list, since an object there is a plugin manifest's table), `promoteFrom`
 * (registries an absent image is copied from instead of rebuilt), `pinBase` (boolean: base images
 * resolved to their digests, pinBase.ts) and `builderOptions` (settings by
 * builder name, each section validated by its builder). In package.json the `kiln` field may
 * also carry a plugin manifest (`apiVersion`, `imageBuilders`, `imageCheckers`,
 * `credentialProviders`, `lockProviders`, `checkCaches`) when the project is itself a plugin; those
 * keys are left to discovery. Anything else is a ConfigError naming file and key.
 */
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { ConfigError, describeValue, ValidationError } from "./errors.js";
import { validateRegistry } from "./validate.js";
import { validatePromoteFrom } from "./promotion/sources.js";

export interface KilnConfig {
  imageBuilder?: string;
  imageRegistry?: string;
  strict?: boolean;
  /** Who hands out build leases: "file" (per host, the default) or a plugin's name such as "redis". */
  lockProvider?: string;
  /** Where existence checks are shared: "none" (the default) or a plugin's name such as "redis". */
  checkCache?: string;
  /** The checkers to ask, in order, by registered name (unset: the builder's own). */
  imageCheckers?: string[];
  /** Registries an absent image is copied from instead of rebuilt, in order (promotion/sources.ts). */
  promoteFrom?: string[];
  /**
   * Settings for image builders, by builder name (`{ "buildkit": { "endpoints": [...] } }`). Core
   * checks the shape (an object of objects); each builder validates its own section.
   */
  builderOptions?: Record<string, Record<string, unknown>>;
  /** Resolve each base image to its digest when the tag is computed (pinBase.ts). */
  pinBase?: boolean;
}

export interface LoadedConfig extends KilnConfig {
  /** Where each key came from (file path), for messages and `kiln plugins`. */
  sources: Partial<Record<keyof KilnConfig, string>>;
}

export const CONFIG_FILE_NAME = "kiln.config.json";
const CONFIG_KEYS = [
  "imageBuilder",
  "imageRegistry",
  "strict",
  "lockProvider",
  "checkCache",
  "imageCheckers",
  "promoteFrom",
  "builderOptions",
  "pinBase",
] as const;
const MANIFEST_KEYS = new Set(["apiVersion", "imageBuilders", "imageCheckers", "credentialProviders", "lockProviders", "checkCaches"]);
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$/;

/** The nearest directory at or above `start` holding a package.json (or `start` itself if none). */
export function findProjectDir(start: string = process.cwd()): string {
  let dir = resolve(start);
  for (;;) {
    try {
      readFileSync(join(dir, "package.json"));
      return dir;
    } catch {
      const parent = dirname(dir);
      if (parent === dir) return resolve(start);
      dir = parent;
    }
  }
}

function readJson(file: string): unknown | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new ConfigError(`Cannot read ${file}: ${(error as Error).message}`, { details: { file } });
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`${file} is not valid JSON: ${(error as Error).message}`, {
      hint: "Fix the JSON syntax of the file.",
      details: { file },
    });
  }
}

function validateSection(raw: unknown, file: string, where: string, allowManifestKeys: boolean): KilnConfig {
  if (raw === undefined) return {};
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ConfigError(`${where} in ${file} must be an object, got ${describeValue(raw)}`, {
      hint: `Write ${where} as { "imageBuilder": "docker", "imageRegistry": "ghcr.io/acme" }.`,
      details: { file, key: where },
    });
  }
  const out: KilnConfig = {};
  for (const [key, value] of Object.entries(raw)) {
    const keyPath = where === "(root)" ? key : `${where}.${key}`;
    const fail = (reason: string, hint: string): never => {
      throw new ConfigError(`Invalid ${keyPath} ${describeValue(value)} in ${file}: ${reason}`, {
        hint,
        details: { file, key: keyPath },
      });
    };
    switch (key) {
      case "imageBuilder":
        if (typeof value !== "string" || !NAME_PATTERN.test(value)) fail("expected a builder name", 'Use the name a plugin declares, e.g. "docker".');
        out.imageBuilder = value as string;
        break;
      case "imageRegistry":
        // The same rule as an Image's `registry` (one grammar): `[::1]:5000` is fine, `-foo` is not,
        // and a host-less "acme" is Docker Hub's "docker.io/acme".
        try {
          out.imageRegistry = validateRegistry(keyPath, value);
        } catch (error) {
          if (!ValidationError.isInstance(error)) throw error;
          const prefix = `Invalid ${keyPath} ${describeValue(value)}: `;
          const reason = error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message;
          fail(reason, error.hint ?? 'E.g. "ghcr.io/acme" or "localhost:5000".');
        }
        break;
      case "lockProvider":
        if (typeof value !== "string" || !NAME_PATTERN.test(value))
          fail("expected a lock provider name", 'Use "file" (per host) or the name a plugin declares, e.g. "redis".');
        out.lockProvider = value as string;
        break;
      case "checkCache":
        if (typeof value !== "string" || !NAME_PATTERN.test(value))
          fail("expected a check cache name", 'Use "none" or the name a plugin declares, e.g. "redis".');
        out.checkCache = value as string;
        break;
      case "imageCheckers":
        // In package.json's `kiln` field an object is a plugin manifest's table (discovery's); a list is this setting.
        if (allowManifestKeys && isPlainObject(value)) break;
        if (!Array.isArray(value) || value.some((name) => typeof name !== "string" || !NAME_PATTERN.test(name))) {
          fail(
            "expected a list of checker names, in the order to ask them",
            'E.g. "imageCheckers": ["docker-local", "registry"]; `kiln plugins` lists the installed checkers.',
          );
        }
        out.imageCheckers = [...(value as string[])];
        break;
      case "promoteFrom":
        try {
          out.promoteFrom = validatePromoteFrom(keyPath, value);
        } catch (error) {
          if (!ValidationError.isInstance(error)) throw error;
          fail(error.message, 'A list of registries, e.g. "promoteFrom": ["ghcr.io/acme-staging"].');
        }
        break;
      case "pinBase":
        if (typeof value !== "boolean") fail("expected true or false", 'Write "pinBase": true to resolve base images to their digests.');
        out.pinBase = value as boolean;
        break;
      case "strict":
        if (typeof value !== "boolean") fail("expected true or false", 'Write "strict": true to fail when every checker errors.');
        out.strict = value as boolean;
        break;
      case "builderOptions": {
        const hint = 'Write it as { "<builder name>": { ...settings } }, e.g. { "buildkit": { "endpoints": ["tcp://buildkitd:1234"] } }.';
        if (!isPlainObject(value)) fail("expected an object of settings by builder name", hint);
        for (const [name, section] of Object.entries(value as object)) {
          if (!NAME_PATTERN.test(name)) fail(`${describeValue(name)} is not a builder name`, hint);
          if (!isPlainObject(section)) fail(`the settings of ${describeValue(name)} must be an object, got ${describeValue(section)}`, hint);
        }
        out.builderOptions = value as Record<string, Record<string, unknown>>;
        break;
      }
      default:
        if (allowManifestKeys && MANIFEST_KEYS.has(key)) break;
        throw new ConfigError(`Unknown key ${describeValue(keyPath)} in ${file}`, {
          hint: `Known keys: ${CONFIG_KEYS.join(", ")}${allowManifestKeys ? ` (and the plugin manifest keys ${[...MANIFEST_KEYS].join(", ")})` : ""}.`,
          details: { file, key: keyPath },
        });
    }
  }
  return out;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Reads and validates the project configuration. Missing files are fine; malformed ones throw ConfigError. */
export function loadConfig(projectDir: string): LoadedConfig {
  const pkgFile = join(projectDir, "package.json");
  const pkg = readJson(pkgFile) as Record<string, unknown> | undefined;
  const fromPackage = pkg && typeof pkg === "object" ? validateSection(pkg.kiln, pkgFile, "kiln", true) : {};
  const configFile = join(projectDir, CONFIG_FILE_NAME);
  const fromFile = validateSection(readJson(configFile), configFile, "(root)", false);
  const merged: LoadedConfig = { sources: {} };
  for (const key of CONFIG_KEYS) {
    if (fromFile[key] !== undefined) {
      (merged as unknown as Record<string, unknown>)[key] = fromFile[key];
      merged.sources[key] = configFile;
    } else if (fromPackage[key] !== undefined) {
      (merged as unknown as Record<string, unknown>)[key] = fromPackage[key];
      merged.sources[key] = pkgFile;
    }
  }
  return merged;
}
