// Remote engines: a second dockerd on a loopback TCP port with TLS, and engines that are not there.
import { rm } from "node:fs/promises";
import { DaemonUnavailableError, Image } from "@kiln/core";
import { freePort, localImageExists, startTlsDaemon, uniqueName, type TlsDaemon } from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DockerImageBuilder } from "../src/builder.js";
import { LocalDockerImageChecker } from "../src/checkers.js";
import { tempTree } from "./helpers.js";

describe("a remote engine over TCP with TLS (DOCKER_HOST + DOCKER_TLS_VERIFY + DOCKER_CERT_PATH)", () => {
  let daemon: TlsDaemon;
  let src: string;
  beforeAll(async () => {
    [daemon, src] = await Promise.all([startTlsDaemon(), tempTree({ "hello.txt": "from the remote engine\n" })]);
  });
  afterAll(async () => {
    await daemon?.stop();
    if (src) await rm(src, { recursive: true, force: true });
  });

  it("builds on the remote daemon, not on the local one, and the local checker pointed at it finds the image", async () => {
    const env = { ...process.env, ...daemon.env };
    const image = Image.fromBase("scratch", { name: uniqueName("kiln-remote") }).withSourceFile(`${src}/hello.txt`, "/hello.txt");
    const result = await new DockerImageBuilder({ env }).buildImage(image, {});
    expect(result.uri).toBe(image.uri);
    expect(await localImageExists(image.uri, daemon.env)).toBe(true);
    expect(await localImageExists(image.uri)).toBe(false);
    expect(await new LocalDockerImageChecker({ env }).imageExists(image.name, image.tag, ["linux/amd64"])).toBe(image.uri);
  });

  it("without the client certificate the remote engine is reported unreachable, with a TLS hint", async () => {
    const image = Image.fromBase("scratch", { name: uniqueName("kiln-remote") }).withSourceFile(`${src}/hello.txt`, "/hello.txt");
    const env = { ...process.env, DOCKER_HOST: daemon.host, DOCKER_TLS: "1", DOCKER_CERT_PATH: "/nonexistent" };
    const error = await new DockerImageBuilder({ env }).buildImage(image, {}).catch((e) => e);
    expect(DaemonUnavailableError.isInstance(error)).toBe(true);
    expect(error.message).toContain(`127.0.0.1:${daemon.port}`);
    expect(error.hint).toMatch(/DOCKER_CERT_PATH/);
  });
});

describe("an engine that is not there", () => {
  const image = Image.fromBase("scratch", { name: "kiln-unreachable" }).withCommands("true");

  it("a missing socket: DaemonUnavailableError telling how to start Docker", async () => {
    const builder = new DockerImageBuilder({ env: { ...process.env, DOCKER_HOST: "unix:///tmp/kiln-no-such-dir/docker.sock" } });
    const error = await builder.buildImage(image, {}).catch((e) => e);
    expect(DaemonUnavailableError.isInstance(error)).toBe(true);
    expect(error.message).toContain("unix:///tmp/kiln-no-such-dir/docker.sock");
    expect(error.hint).toMatch(/systemctl start docker|dockerd/);
    expect(error.hint).toMatch(/DOCKER_HOST/);
  });

  it("a TCP port nobody listens on: DaemonUnavailableError (connection refused)", async () => {
    const port = await freePort();
    const builder = new DockerImageBuilder({ env: { ...process.env, DOCKER_HOST: `tcp://127.0.0.1:${port}` } });
    const error = await builder.buildImage(image, {}).catch((e) => e);
    expect(DaemonUnavailableError.isInstance(error)).toBe(true);
    expect(error.message).toMatch(/connection refused/);
  });

  it("the local checker also throws (so the engine moves on) rather than answering absent", async () => {
    const checker = new LocalDockerImageChecker({ env: { ...process.env, DOCKER_HOST: "unix:///tmp/kiln-no-such-dir/docker.sock" } });
    const error = await checker.imageExists("kiln-unreachable", "x", ["linux/amd64"]).catch((e) => e);
    expect(DaemonUnavailableError.isInstance(error)).toBe(true);
  });
});
