/**
 * Credentials from the docker CLI's config (`$DOCKER_CONFIG/config.json`, else
 * `~/.docker/config.json`), looked up the way the docker CLI does: `credHelpers[host]`, then the
 * `credsStore`, then `auths` (base64 `auth`, `username`/`password`, `identitytoken`). Docker Hub's
 * entry is keyed `https://index.docker.io/v1/`. Helpers speak the docker-credential protocol:
 * `docker-credential-<name> get`, server URL on stdin, `{ Username, Secret }` JSON on stdout
 * (`Username: "<token>"` marks an identity token).
 */
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { AuthError, ConfigError } from "../errors.js";
import type { RegistryCredentials } from "./credentials.js";

export const DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/";
const DOCKER_HUB_HOSTS = new Set(["docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"]);

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
  registrytoken?: string;
}

interface DockerConfigFile {
  auths?: Record<string, AuthEntry>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

export function dockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env.DOCKER_CONFIG || path.join(os.homedir(), ".docker");
  return path.join(dir, "config.json");
}

/** `https://ghcr.io/v1/` → `ghcr.io`; Docker Hub's many names → `docker.io`. */
export function normalizeConfigKey(key: string): string {
  const host = key
    .replace(/^[a-z]+:\/\//i, "")
    .split("/")[0]!
    .toLowerCase();
  return DOCKER_HUB_HOSTS.has(host) ? "docker.io" : host;
}

/** The server URL a credential helper is asked about (what `docker login` stored it under). */
export function helperServerUrl(registry: string): string {
  return normalizeConfigKey(registry) === "docker.io" ? DOCKER_HUB_CONFIG_KEY : registry;
}

async function readConfig(file: string): Promise<DockerConfigFile | undefined> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new ConfigError(`Cannot read the docker config ${file}: ${(error as Error).message}`, {
      hint: "Check the file's permissions or point DOCKER_CONFIG at another directory.",
    });
  }
  try {
    return JSON.parse(text) as DockerConfigFile;
  } catch {
    throw new ConfigError(`The docker config ${file} is not valid JSON`, {
      hint: "Fix the file (or run `docker login` again to rewrite it).",
      details: { file },
    });
  }
}

/** Credentials the user's docker config holds for `registry` (a host such as `ghcr.io` or `docker.io`). */
export async function dockerConfigCredentials(
  registry: string,
  options: { env?: NodeJS.ProcessEnv; helperTimeoutMs?: number } = {},
): Promise<RegistryCredentials | undefined> {
  const env = options.env ?? process.env;
  const file = dockerConfigPath(env);
  const config = await readConfig(file);
  if (!config) return undefined;
  const host = normalizeConfigKey(registry);

  const helperEntry = Object.entries(config.credHelpers ?? {}).find(([key]) => normalizeConfigKey(key) === host);
  if (helperEntry) return runCredentialHelper(helperEntry[1], helperServerUrl(registry), env, options.helperTimeoutMs);

  if (config.credsStore) {
    const fromStore = await runCredentialHelper(config.credsStore, helperServerUrl(registry), env, options.helperTimeoutMs);
    if (fromStore) return fromStore;
  }

  const entry = Object.entries(config.auths ?? {}).find(([key]) => normalizeConfigKey(key) === host)?.[1];
  return entry ? fromAuthEntry(entry, registry, file) : undefined;
}

function fromAuthEntry(entry: AuthEntry, registry: string, file: string): RegistryCredentials | undefined {
  if (entry.identitytoken) {
    return { username: entry.username, identityToken: entry.identitytoken };
  }
  if (entry.registrytoken) return { registryToken: entry.registrytoken };
  if (entry.auth) {
    const decoded = Buffer.from(entry.auth, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon <= 0) {
      // Never echo the value: it is a credential.
      throw new ConfigError(`The docker config entry for ${registry} has an unreadable "auth" value`, {
        hint: `Run \`docker login ${registry}\` again to rewrite ${file}.`,
        details: { registry, file },
      });
    }
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  if (entry.username && entry.password !== undefined) return { username: entry.username, password: entry.password };
  return undefined;
}

/** Runs `docker-credential-<helper> get`; undefined when the helper has nothing for this server. */
export function runCredentialHelper(
  helper: string,
  serverUrl: string,
  env: NodeJS.ProcessEnv = process.env,
  timeoutMs = 15_000,
): Promise<RegistryCredentials | undefined> {
  if (!/^[A-Za-z0-9_.-]+$/.test(helper)) {
    return Promise.reject(
      new ConfigError(`Invalid credential helper name ${JSON.stringify(helper)} in the docker config`, {
        hint: 'credHelpers / credsStore values are suffixes of a docker-credential-<name> program, e.g. "pass" or "ecr-login".',
      }),
    );
  }
  const program = `docker-credential-${helper}`;
  return new Promise((resolve, reject) => {
    const child = execFile(program, ["get"], { env, timeout: timeoutMs, maxBuffer: 1024 * 1024 }, (error, stdout) => {
      if (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === "ENOENT") {
          reject(
            new AuthError(`The credential helper ${program} (named in the docker config) is not on PATH`, {
              hint: `Install ${program}, or remove it from credHelpers/credsStore in ${dockerConfigPath(env)}.`,
              details: { helper: program, server: serverUrl },
            }),
          );
          return;
        }
        // The helper protocol reports a missing entry on stdout; anything else is a real failure.
        if (/credentials not found/i.test(String(stdout))) return resolve(undefined);
        reject(
          new AuthError(`The credential helper ${program} failed for ${serverUrl}`, {
            hint: `Run \`echo ${serverUrl} | ${program} get\` to see why, or log in again with docker login.`,
            details: { helper: program, server: serverUrl, exitCode: typeof code === "number" ? code : undefined },
          }),
        );
        return;
      }
      let parsed: { Username?: string; Secret?: string };
      try {
        parsed = JSON.parse(stdout) as typeof parsed;
      } catch {
        reject(
          new AuthError(`The credential helper ${program} printed something that is not JSON`, {
            hint: `The helper protocol expects {"Username": …, "Secret": …} on stdout; check ${program}.`,
            details: { helper: program, server: serverUrl },
          }),
        );
        return;
      }
      if (!parsed.Secret) return resolve(undefined);
      if (parsed.Username === "<token>") resolve({ identityToken: parsed.Secret });
      else resolve({ username: parsed.Username ?? "", password: parsed.Secret });
    });
    child.stdin?.end(serverUrl);
  });
}
