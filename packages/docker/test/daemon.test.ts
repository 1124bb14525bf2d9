// The daemon connection without the engine: error translation, and the process environment never
// overriding the environment Kiln was handed.
import { ConfigError, DaemonUnavailableError } from "@kiln/core";
import { afterEach, describe, expect, it } from "vitest";
import { resolveDockerConnection } from "../src/daemon/connection.js";
import { DockerDaemon } from "../src/daemon/daemon.js";
import { withoutModemDebug } from "../src/daemon/modemDebug.js";

const saved = { DOCKER_HOST: process.env.DOCKER_HOST, DOCKER_CERT_PATH: process.env.DOCKER_CERT_PATH, DOCKER_TLS_VERIFY: process.env.DOCKER_TLS_VERIFY };
afterEach(() => {
  for (const [key, value] of Object.entries(saved)) {
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
});

describe("DockerDaemon.translate", () => {
  const daemon = new DockerDaemon(resolveDockerConnection({}));
  it("keeps an error the daemon answered with, whatever its text says", () => {
    const answered = Object.assign(new Error("(HTTP code 500) server error - failed to connect to the registry: connection refused"), { statusCode: 500 });
    expect(daemon.translate(answered)).toBe(answered);
  });
  it("still maps a refused connection to DaemonUnavailableError", () => {
    const refused = Object.assign(new Error("connect ECONNREFUSED /var/run/docker.sock"), { code: "ECONNREFUSED" });
    expect(DaemonUnavailableError.isInstance(daemon.translate(refused))).toBe(true);
  });
});

describe("the process environment does not leak into an explicit connection", () => {
  it("gives docker-modem every key its env defaults could set", () => {
    const options = resolveDockerConnection({ DOCKER_HOST: "unix:///tmp/d.sock" }).options as Record<string, unknown>;
    expect(options.socketPath).toBe("/tmp/d.sock");
    for (const key of ["host", "port", "protocol", "ca", "cert", "key"]) expect(Object.hasOwn(options, key) && options[key] === undefined).toBe(true);
  });

  it("uses the unix socket it was given while process.env.DOCKER_HOST names a tcp engine", async () => {
    process.env.DOCKER_HOST = "tcp://127.0.0.1:9";
    const modem = (await DockerDaemon.fromEnv({ DOCKER_HOST: "unix:///tmp/kiln-explicit.sock" }).docker()).modem as { socketPath?: unknown; host?: unknown };
    expect(modem.host).toBeUndefined();
    expect(modem.socketPath).toBe("/tmp/kiln-explicit.sock");
  });

  it("a broken process DOCKER_CERT_PATH is a ConfigError, not a raw ENOENT", async () => {
    process.env.DOCKER_HOST = "tcp://127.0.0.1:2376";
    process.env.DOCKER_CERT_PATH = "/nonexistent/kiln-certs";
    const error = await DockerDaemon.fromEnv({})
      .docker()
      .catch((e) => e);
    expect(ConfigError.isInstance(error)).toBe(true);
    expect(error.details).toMatchObject({ field: "DOCKER_CERT_PATH", value: "/nonexistent/kiln-certs" });
  });
});

describe("withoutModemDebug", () => {
  it("excludes docker-modem's namespace and leaves the rest", () => {
    expect(withoutModemDebug("*")).toBe("*,-modem");
    expect(withoutModemDebug("modem,kiln:*")).toBe("modem,kiln:*,-modem");
    expect(withoutModemDebug("*,-modem")).toBe("*,-modem");
    expect(withoutModemDebug(undefined)).toBeUndefined();
  });
});
