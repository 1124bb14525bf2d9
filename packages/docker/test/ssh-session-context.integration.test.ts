// Issue 14, ssh:// DOCKER_HOST: the BuildKit session (context and Dockerfile as filesync sources,
// `remote=client-session`) reaches the engine through `docker system dial-stdio` over ssh, as the
// docker CLI does, instead of falling back to a tar with a hidden `.dockerfile.kiln` that a `COPY .`
// would pick up. The ssh host is a real SSH server on loopback (@kiln/test-utils' startSshDockerHost,
// ssh2's server) in front of the machine's Docker Engine.
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { Image } from "@kiln/core";
import { DockerCleanup, ensureBusyboxImage, runInImage, startSshDockerHost, uniqueName, type SshDockerHost } from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DockerImageBuilder } from "../src/builder.js";
import { tempTree } from "./helpers.js";

let busybox: string;
let ssh: SshDockerHost;
const cleanup = new DockerCleanup();
const dirs: string[] = [];

beforeAll(async () => {
  busybox = await ensureBusyboxImage();
  ssh = await startSshDockerHost();
});

afterAll(async () => {
  await ssh?.stop();
  await cleanup.run();
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function tree(files: Record<string, string>): Promise<string> {
  const dir = await tempTree(files, "kiln-ssh-ctx-");
  dirs.push(dir);
  return dir;
}

describe("BuildKit over an ssh:// DOCKER_HOST: the context through the session", () => {
  it("a Dockerfile outside the context: COPY . /app has neither .dockerfile.kiln nor the Dockerfile; the session went through ssh", async () => {
    const ctx = await tree({ "app.txt": "a", ".dockerignore": "*.log\n", "skip.log": "x" });
    const elsewhere = await tree({ "build.Dockerfile": `FROM ${busybox}\nCOPY . /app\n` });
    const image = Image.fromDockerfile(join(elsewhere, "build.Dockerfile"), { context: ctx, name: uniqueName("kiln-sshctx") });
    const env = { ...process.env, ...ssh.env };
    const { uri } = await new DockerImageBuilder({ buildkit: true, env }).buildImage(image, {});
    cleanup.image(uri!);
    expect((await runInImage(uri!, ["ls", "-a1", "/app"])).trim().split("\n")).toEqual([".", "..", ".dockerignore", "app.txt"]);
    // The Engine API calls, the session's upgrade among them, went through the ssh host.
    expect(ssh.requests.some((line) => line.startsWith("POST /session "))).toBe(true);
    expect(ssh.requests.some((line) => /^POST \/v[\d.]+\/build\?/.test(line) || line.startsWith("POST /build?"))).toBe(true);
  });
});
