/**
 * The `buildkit` section of the project's `builderOptions` (kiln.config.json, or the `kiln` field of
 * package.json), validated here — core only checks that it is an object:
 *
 *   {
 *     "builderOptions": {
 *       "buildkit": {
 *         "endpoints": ["tcp://buildkitd.internal:1234", { "host": "tcp://arm:1234", "platforms": ["linux/arm64"] }],
 *         "tls": { "ca": "certs/ca.pem", "cert": "certs/cert.pem", "key": "certs/key.pem", "serverName": "buildkitd" },
 *         "cacheFrom": true, "cacheTo": true
 *       }
 *     }
 *   }
 *
 * Relative TLS paths are read from the directory of the file that holds them. These settings come
 * last: the builder's constructor options win, then the environment (KILN_BUILDKIT_*), then these.
 */
import { dirname, isAbsolute, resolve } from "node:path";
import { ConfigError, findProjectDir, loadConfig, type Architecture } from "@kiln/core";
import { describeValue } from "@kiln/core/plugin";
import type { CacheOptions } from "./cache.js";
import type { BuildKitEndpointOptions, BuildKitTlsOptions } from "./endpoints.js";

export const BUILDER_NAME = "buildkit";

export interface ConfiguredBuildKitOptions extends CacheOptions {
  endpoints?: BuildKitEndpointOptions[];
  /** TLS for every `tcp://` endpoint that has none of its own. */
  tls?: BuildKitTlsOptions;
  networkMode?: string;
  noCache?: boolean;
  pull?: boolean;
  checkBasePlatforms?: boolean;
  connectTimeoutMs?: number;
  /** The file the settings were read from (for messages). */
  file?: string;
}

const KEYS = ["endpoints", "tls", "cacheFrom", "cacheTo", "networkMode", "noCache", "pull", "checkBasePlatforms", "connectTimeoutMs"];
const TLS_KEYS = ["ca", "cert", "key", "serverName"];
const NETWORK_MODES = ["sandbox", "host", "none"];

/** The project's `builderOptions.buildkit`, validated; `{}` when there is none. Throws ConfigError naming file and key. */
export function configuredBuildKitOptions(projectDir: string = findProjectDir()): ConfiguredBuildKitOptions {
  const config = loadConfig(projectDir);
  const section = config.builderOptions?.[BUILDER_NAME];
  if (section === undefined) return {};
  const file = config.sources.builderOptions ?? projectDir;
  const base = dirname(file);
  const fail = (key: string, value: unknown, reason: string, hint: string): never => {
    const keyPath = `builderOptions.${BUILDER_NAME}${key ? `.${key}` : ""}`;
    throw new ConfigError(`Invalid ${keyPath} ${describeValue(value)} in ${file}: ${reason}`, { hint, details: { file, key: keyPath } });
  };
  const out: ConfiguredBuildKitOptions = { file };
  for (const [key, value] of Object.entries(section)) {
    switch (key) {
      case "endpoints": {
        const list = typeof value === "string" ? [value] : value;
        if (!Array.isArray(list) || list.length === 0)
          fail(key, value, "expected an address or a non-empty list of them", 'E.g. ["tcp://buildkitd:1234"] or "unix:///run/buildkit/buildkitd.sock".');
        out.endpoints = (list as unknown[]).map((entry, i) => endpointOf(entry, `${key}[${i}]`, base, fail));
        break;
      }
      case "tls":
        out.tls = tlsOf(value, key, base, fail);
        break;
      case "cacheFrom":
        if (typeof value === "boolean") out.cacheFrom = value;
        else if (typeof value === "string" && value.trim() !== "") out.cacheFrom = value.trim() === "auto" ? true : [value];
        else if (Array.isArray(value) && value.every((v) => typeof v === "string" && v.trim() !== "")) out.cacheFrom = value as string[];
        else
          fail(
            key,
            value,
            "expected true, a cache ref or entry, or a list of them",
            'E.g. true (the image\'s `<registry>/<name>:buildcache`), "ghcr.io/acme/api:buildcache" or ["type=registry,ref=…"].',
          );
        break;
      case "cacheTo":
        if (typeof value === "boolean") out.cacheTo = value;
        else if (typeof value === "string" && value.trim() !== "") out.cacheTo = value.trim() === "auto" ? true : value;
        else fail(key, value, "expected true or one cache ref or entry", 'E.g. true, or "type=registry,ref=ghcr.io/acme/api:buildcache,mode=max".');
        break;
      case "networkMode":
        if (typeof value !== "string" || !NETWORK_MODES.includes(value))
          fail(
            key,
            value,
            `expected one of ${NETWORK_MODES.join(", ")}`,
            '"host" runs steps in the daemon host\'s network (the daemon needs the network.host entitlement).',
          );
        out.networkMode = value as string;
        break;
      case "noCache":
      case "pull":
      case "checkBasePlatforms":
        if (typeof value !== "boolean") fail(key, value, "expected true or false", `Write "${key}": true or false.`);
        out[key] = value as boolean;
        break;
      case "connectTimeoutMs":
        if (typeof value !== "number" || !Number.isInteger(value) || value <= 0)
          fail(key, value, "expected a positive whole number of milliseconds", 'E.g. "connectTimeoutMs": 10000.');
        out.connectTimeoutMs = value as number;
        break;
      default:
        fail(key, value, "unknown key", `Known keys: ${KEYS.join(", ")}.`);
    }
  }
  return out;
}

type Fail = (key: string, value: unknown, reason: string, hint: string) => never;

function endpointOf(entry: unknown, key: string, base: string, fail: Fail): BuildKitEndpointOptions {
  const hint = 'An address ("tcp://host:1234", "unix:///path.sock", "docker-engine") or { "host": "tcp://…", "tls": {…}, "platforms": ["linux/arm64"] }.';
  if (typeof entry === "string") return { host: entry };
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) return fail(key, entry, "expected an address or an endpoint object", hint);
  const out: BuildKitEndpointOptions = { host: "" };
  for (const [k, v] of Object.entries(entry)) {
    if (k === "host") {
      if (typeof v !== "string" || v.trim() === "") fail(`${key}.host`, v, "expected an address", hint);
      out.host = v as string;
    } else if (k === "tls") out.tls = tlsOf(v, `${key}.tls`, base, fail);
    else if (k === "platforms") {
      if (!Array.isArray(v) || !v.every((p) => typeof p === "string")) fail(`${key}.platforms`, v, "expected a list of platforms", 'E.g. ["linux/arm64"].');
      out.platforms = v as Architecture[];
    } else fail(`${key}.${k}`, v, "unknown key", "Known keys: host, tls, platforms.");
  }
  if (!out.host) fail(`${key}.host`, undefined, "missing", hint);
  return out;
}

function tlsOf(value: unknown, key: string, base: string, fail: Fail): BuildKitTlsOptions {
  const hint = 'E.g. { "ca": "certs/ca.pem", "cert": "certs/cert.pem", "key": "certs/key.pem", "serverName": "buildkitd" } (paths relative to this file).';
  if (typeof value !== "object" || value === null || Array.isArray(value)) return fail(key, value, "expected an object", hint);
  const out: BuildKitTlsOptions = {};
  for (const [k, v] of Object.entries(value)) {
    if (!TLS_KEYS.includes(k)) fail(`${key}.${k}`, v, "unknown key", `Known keys: ${TLS_KEYS.join(", ")}.`);
    if (typeof v !== "string" || v.trim() === "") fail(`${key}.${k}`, v, "expected a non-empty string", hint);
    const text = v as string;
    if (k === "serverName") out.serverName = text;
    else out[k as "ca" | "cert" | "key"] = isAbsolute(text) ? text : resolve(base, text);
  }
  return out;
}
