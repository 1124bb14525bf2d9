/**
 * Where BuildKit runs, as Kiln is told: builder options first, else `KILN_BUILDKIT_HOST` (one
 * address, or a comma-separated pool), else the Docker Engine's embedded BuildKit (`docker-engine`,
 * reached through DOCKER_HOST as @kiln/docker reaches the engine).
 *
 *   docker-engine                         the engine's BuildKit via the Engine API's `/grpc`
 *   unix:///run/buildkit/buildkitd.sock   a standalone buildkitd on a unix socket
 *   tcp://buildkitd.example:1234          a standalone buildkitd on tcp (mTLS with the TLS settings)
 *   tcp://arm64-box:1234;platforms=linux/arm64   …that runs these platforms natively (pinned)
 *
 * mTLS: `KILN_BUILDKIT_TLS_CA`, `KILN_BUILDKIT_TLS_CERT`, `KILN_BUILDKIT_TLS_KEY` (PEM file paths) and
 * `KILN_BUILDKIT_TLS_SERVER_NAME` — buildctl's `--tlscacert/--tlscert/--tlskey/--tlsservername`.
 */
import { readFileSync } from "node:fs";
import { ConfigError, type Architecture } from "@kiln/core";
import { validatePlatforms } from "@kiln/core/plugin";

export interface BuildKitTlsOptions {
  /** PEM CA bundle the daemon's certificate must chain to (path, or the PEM itself as a Buffer). */
  ca?: string | Buffer;
  /** Client certificate and key for mTLS (paths or PEM Buffers). */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** The name the daemon's certificate is checked against (default: the host). */
  serverName?: string;
}

export interface BuildKitEndpointOptions {
  /** `docker-engine`, `unix:///path/buildkitd.sock` or `tcp://host:port`. */
  host: string;
  tls?: BuildKitTlsOptions;
  /** Platforms this endpoint builds natively: images for them go here first (buildx node platforms). */
  platforms?: Architecture[];
}

export type EndpointKind = "docker-engine" | "unix" | "tcp";

export interface BuildKitEndpoint {
  kind: EndpointKind;
  /** As written (for messages; never holds credentials). */
  address: string;
  socketPath?: string;
  hostname?: string;
  port?: number;
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer; serverName?: string };
  platforms: Architecture[];
}

export const DOCKER_ENGINE_ENDPOINT = "docker-engine";

/**
 * The endpoints in force: `options` if given, else KILN_BUILDKIT_HOST, else the project's configured
 * ones (builderOptions.buildkit), else the engine. TLS settings from the environment, else the
 * configured `tls`, apply to every tcp:// endpoint without its own.
 */
export function resolveEndpoints(
  options: ReadonlyArray<string | BuildKitEndpointOptions> | undefined,
  env: NodeJS.ProcessEnv = process.env,
  configured: { endpoints?: readonly BuildKitEndpointOptions[]; tls?: BuildKitTlsOptions } = {},
): BuildKitEndpoint[] {
  const envTls = tlsFromEnv(env) ?? configured.tls;
  if (options && options.length > 0) return options.map((o) => parseEndpoint(typeof o === "string" ? { host: o } : o, envTls));
  const fromEnv = (env.KILN_BUILDKIT_HOST ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (fromEnv.length === 0 && configured.endpoints && configured.endpoints.length > 0) return configured.endpoints.map((o) => parseEndpoint(o, envTls));
  if (fromEnv.length === 0) return [parseEndpoint({ host: DOCKER_ENGINE_ENDPOINT }, envTls)];
  return fromEnv.map((entry) => {
    const [host, ...params] = entry.split(";").map((s) => s.trim());
    const platforms = params.flatMap((p) => (p.startsWith("platforms=") ? p.slice("platforms=".length).split("+").filter(Boolean) : []));
    for (const p of params) {
      if (!p.startsWith("platforms=")) {
        throw new ConfigError(`Unknown parameter ${JSON.stringify(p)} in KILN_BUILDKIT_HOST entry ${JSON.stringify(entry)}`, {
          hint: "Write entries as `tcp://host:1234` or `tcp://host:1234;platforms=linux/arm64+linux/arm/v7`, separated by commas.",
          details: { field: "KILN_BUILDKIT_HOST", value: entry },
        });
      }
    }
    return parseEndpoint({ host: host!, platforms: platforms as Architecture[] }, envTls);
  });
}

function tlsFromEnv(env: NodeJS.ProcessEnv): BuildKitTlsOptions | undefined {
  const tls: BuildKitTlsOptions = {
    ...(env.KILN_BUILDKIT_TLS_CA ? { ca: env.KILN_BUILDKIT_TLS_CA } : {}),
    ...(env.KILN_BUILDKIT_TLS_CERT ? { cert: env.KILN_BUILDKIT_TLS_CERT } : {}),
    ...(env.KILN_BUILDKIT_TLS_KEY ? { key: env.KILN_BUILDKIT_TLS_KEY } : {}),
    ...(env.KILN_BUILDKIT_TLS_SERVER_NAME ? { serverName: env.KILN_BUILDKIT_TLS_SERVER_NAME } : {}),
  };
  return Object.keys(tls).length > 0 ? tls : undefined;
}

export function parseEndpoint(options: BuildKitEndpointOptions, defaultTls?: BuildKitTlsOptions): BuildKitEndpoint {
  const address = options.host.trim();
  const platforms = options.platforms && options.platforms.length > 0 ? validatePlatforms("endpoint platforms", options.platforms) : [];
  if (address === DOCKER_ENGINE_ENDPOINT) return { kind: "docker-engine", address, platforms };
  if (address.startsWith("unix://")) {
    const socketPath = address.slice("unix://".length);
    if (!socketPath.startsWith("/")) throw invalid(address, "a unix:// address needs an absolute socket path");
    return { kind: "unix", address, socketPath, platforms };
  }
  if (address.startsWith("tcp://")) {
    let url: URL;
    try {
      url = new URL(address);
    } catch {
      throw invalid(address, "not a valid tcp:// URL");
    }
    if (!url.hostname || !url.port) throw invalid(address, "a tcp:// address needs a host and a port");
    const tls = options.tls ?? defaultTls;
    return {
      kind: "tcp",
      address: `tcp://${url.hostname}:${url.port}`,
      hostname: url.hostname.replace(/^\[|\]$/g, ""),
      port: Number(url.port),
      ...(tls ? { tls: loadTls(tls) } : {}),
      platforms,
    };
  }
  throw invalid(address, "unknown scheme");
}

function loadTls(tls: BuildKitTlsOptions): NonNullable<BuildKitEndpoint["tls"]> {
  const read = (value: string | Buffer | undefined, what: string): Buffer | undefined => {
    if (value === undefined || Buffer.isBuffer(value)) return value;
    try {
      return readFileSync(value);
    } catch (error) {
      throw new ConfigError(`Cannot read the BuildKit TLS ${what} ${JSON.stringify(value)}: ${(error as Error).message}`, {
        hint: "Point KILN_BUILDKIT_TLS_CA / _CERT / _KEY (or the builder's `tls` option) at readable PEM files.",
        details: { field: `tls.${what}`, value },
      });
    }
  };
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    throw new ConfigError("BuildKit mTLS needs both a client certificate and its key", {
      hint: "Set both KILN_BUILDKIT_TLS_CERT and KILN_BUILDKIT_TLS_KEY (or neither).",
      details: { field: "tls" },
    });
  }
  return {
    ...(tls.ca !== undefined ? { ca: read(tls.ca, "ca") } : {}),
    ...(tls.cert !== undefined ? { cert: read(tls.cert, "cert") } : {}),
    ...(tls.key !== undefined ? { key: read(tls.key, "key") } : {}),
    ...(tls.serverName ? { serverName: tls.serverName } : {}),
  };
}

function invalid(address: string, reason: string): ConfigError {
  return new ConfigError(`Invalid BuildKit address ${JSON.stringify(address)}: ${reason}`, {
    hint: "Use `docker-engine`, `unix:///run/buildkit/buildkitd.sock` or `tcp://host:1234` (KILN_BUILDKIT_HOST, or the builder's `endpoints` option).",
    details: { field: "KILN_BUILDKIT_HOST", value: address },
  });
}
