/**
 * Build secrets served to the machine's real dockerd through a BuildKit session (openBuildSession),
 * used by `RUN --mount=type=secret` in `POST /build?version=2&session=<id>` builds — the request
 * buildOne.ts makes (DockerDaemon.dial; dockerode's buildImage is NOT usable for this: with
 * `version: "2"` it opens a session of its own and overwrites `session`).
 *
 * Each step checks the SHA-256 of the mounted file against a build arg, so a build only succeeds if
 * the daemon received exactly the value (a control build with another value fails), and the value
 * itself is then looked for in everything the build left: the image (`docker save`), its history
 * and config, and the build's JSON stream (with its base64 BuildKit trace messages decoded).
 */
import { execFile, fork } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { CancelledError } from "@kiln/core";
import { DockerCleanup, docker, ensureBusyboxImage, runInImage, uniqueName } from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openBuildSession, type BuildSession } from "../src/session/buildSession.js";
import { DockerDaemon } from "../src/daemon/daemon.js";

const run = promisify(execFile);
const HERE = fileURLToPath(new URL(".", import.meta.url));
const require = createRequire(import.meta.url);
// The child process runs this package's TypeScript through tsx, a dependency of the workspace's @kiln/core.
const TSX = pathToFileURL(createRequire(require.resolve("@kiln/core/package.json")).resolve("tsx")).href;

const cleanup = new DockerCleanup();
const dirs: string[] = [];
const daemon = DockerDaemon.fromEnv();
let busybox: string;

beforeAll(async () => {
  busybox = await ensureBusyboxImage();
});
afterAll(async () => {
  await cleanup.run();
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

const newSecret = () => `kiln-secret-${randomBytes(12).toString("hex")}`;
const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");
const b64 = (text: string) => Buffer.from(text).toString("base64");

/** A step that succeeds only if the file at `path` hashes to $EXPECTED_SHA; it leaves /proof behind. */
function checkingStep(mount: string, path: string, proof = "/proof"): string {
  const script = `test "$(sha256sum < ${path} | cut -d' ' -f1)" = "$EXPECTED_SHA" && echo ok > ${proof}`;
  return `RUN --mount=${mount} ${JSON.stringify(["/bin/sh", "-c", script])}`;
}

interface BuildResult {
  ok: boolean;
  error: string | undefined;
  /** The raw JSON stream, plus every base64 aux payload decoded (BuildKit's trace is protobuf in base64). */
  transcript: Buffer;
}

/** One BuildKit build of `dockerfile` (the context is just the Dockerfile) with the session's id. */
async function buildWith(dockerfile: string, options: { tag: string; session?: string; buildArgs?: Record<string, string> }): Promise<BuildResult> {
  const dir = await mkdtemp(join(tmpdir(), "kiln-secrets-ctx-"));
  dirs.push(dir);
  await writeFile(join(dir, "Dockerfile"), dockerfile);
  const { stdout: tar } = await run("tar", ["-c", "-C", dir, "Dockerfile"], { encoding: "buffer" });
  cleanup.image(options.tag);
  const response = await daemon.dial({
    method: "POST",
    path: "/build",
    query: {
      t: options.tag,
      version: "2",
      session: options.session,
      buildargs: options.buildArgs,
      nocache: "1",
    },
    body: Readable.from([tar]),
    headers: { "Content-Type": "application/x-tar" },
  });
  const chunks: Buffer[] = [];
  for await (const chunk of response) chunks.push(chunk as Buffer);
  const raw = Buffer.concat(chunks);
  const decoded: Buffer[] = [];
  let error: string | undefined;
  for (const line of raw.toString("utf8").split("\n")) {
    if (!line.trim()) continue;
    const message = JSON.parse(line) as { aux?: unknown; error?: string };
    if (message.error) error = message.error;
    if (typeof message.aux === "string") decoded.push(Buffer.from(message.aux, "base64"));
  }
  return { ok: error === undefined, error, transcript: Buffer.concat([raw, ...decoded]) };
}

function expectNoSecret(haystack: Buffer | string, secret: string, where: string): void {
  const bytes = typeof haystack === "string" ? Buffer.from(haystack) : haystack;
  expect(bytes.length, `${where} is empty`).toBeGreaterThan(0);
  for (const form of [secret, b64(secret)]) expect(bytes.includes(form), `${where} holds the secret (${form === secret ? "as is" : "base64"})`).toBe(false);
}

describe("build secrets through a BuildKit session (real dockerd)", () => {
  it("serves the exact value to RUN --mount=type=secret, and it is nowhere in the image, its history or the build output", async () => {
    const secret = newSecret();
    const tag = `${uniqueName("kiln-secret")}:1`;
    const dockerfile = [`FROM ${busybox}`, "ARG EXPECTED_SHA", checkingStep("type=secret,id=tok,required=true", "/run/secrets/tok"), ""].join("\n");

    const session = await openBuildSession(daemon.connection, { secrets: new Map([["tok", secret]]) });
    let result: BuildResult;
    try {
      result = await buildWith(dockerfile, { tag, session: session.id, buildArgs: { EXPECTED_SHA: sha256(secret) } });
    } finally {
      await session.close();
    }
    expect(result.error).toBeUndefined();
    expect(result.ok).toBe(true);
    expect(session.served().get("tok")).toBe(1);
    expect(session.missing().size).toBe(0);
    expect((await runInImage(tag, ["cat", "/proof"])).trim()).toBe("ok");
    // The mount is gone after the step: no /run/secrets/tok in the image.
    expect((await runInImage(tag, ["sh", "-c", "test -e /run/secrets/tok && echo present || echo absent"])).trim()).toBe("absent");

    expectNoSecret(result.transcript, secret, "the build's JSON stream");
    const { stdout: saved } = await run("docker", ["save", tag], { encoding: "buffer", maxBuffer: 512 * 1024 * 1024 });
    expectNoSecret(saved, secret, "`docker save` of the image");
    expectNoSecret(await docker(["history", "--no-trunc", tag]), secret, "`docker history --no-trunc`");
    expectNoSecret(await docker(["image", "inspect", tag]), secret, "`docker image inspect`");
  });

  it("the check in the step is real: the same build with another value served fails", async () => {
    const secret = newSecret();
    const tag = `${uniqueName("kiln-secret")}:control`;
    const dockerfile = [`FROM ${busybox}`, "ARG EXPECTED_SHA", checkingStep("type=secret,id=tok,required=true", "/run/secrets/tok"), ""].join("\n");
    const session = await openBuildSession(daemon.connection, { secrets: new Map([["tok", `${secret}-other`]]) });
    try {
      const result = await buildWith(dockerfile, { tag, session: session.id, buildArgs: { EXPECTED_SHA: sha256(secret) } });
      expect(result.ok).toBe(false);
      expect(result.error).toMatch(/did not complete successfully|exit code: 1|returned a non-zero code/);
      expect(session.served().get("tok")).toBe(1);
    } finally {
      await session.close();
    }
  });

  it("a required secret the session does not have fails the build with a message naming it", async () => {
    const tag = `${uniqueName("kiln-secret")}:missing`;
    const dockerfile = [`FROM ${busybox}`, 'RUN --mount=type=secret,id=absent_token,required=true ["/bin/true"]', ""].join("\n");
    const session = await openBuildSession(daemon.connection, { secrets: new Map([["tok", newSecret()]]) });
    try {
      const result = await buildWith(dockerfile, { tag, session: session.id });
      expect(result.ok).toBe(false);
      expect(result.error).toMatch(/secret absent_token not found/);
      expect([...session.missing()]).toEqual(["absent_token"]);
      expect(session.served().size).toBe(0);
    } finally {
      await session.close();
    }
  });

  it("target= mounts the secret at the given path (and not under /run/secrets)", async () => {
    const secret = newSecret();
    const tag = `${uniqueName("kiln-secret")}:target`;
    const script = `test ! -e /run/secrets/tok && test "$(sha256sum < /etc/kiln/token | cut -d' ' -f1)" = "$EXPECTED_SHA" && echo ok > /proof-target`;
    const dockerfile = [
      `FROM ${busybox}`,
      "ARG EXPECTED_SHA",
      `RUN --mount=type=secret,id=tok,target=/etc/kiln/token,required=true ${JSON.stringify(["/bin/sh", "-c", script])}`,
      "",
    ].join("\n");
    const session = await openBuildSession(daemon.connection, { secrets: new Map([["tok", secret]]) });
    try {
      const result = await buildWith(dockerfile, { tag, session: session.id, buildArgs: { EXPECTED_SHA: sha256(secret) } });
      expect(result.error).toBeUndefined();
      expect(session.served().get("tok")).toBe(1);
    } finally {
      await session.close();
    }
    expect((await runInImage(tag, ["cat", "/proof-target"])).trim()).toBe("ok");
    expect((await runInImage(tag, ["sh", "-c", "test -e /etc/kiln/token && echo present || echo absent"])).trim()).toBe("absent");
  });

  it("two concurrent builds with two sessions each get their own value", async () => {
    const secrets = [newSecret(), newSecret()];
    const dockerfile = [`FROM ${busybox}`, "ARG EXPECTED_SHA", checkingStep("type=secret,id=tok,required=true", "/run/secrets/tok"), ""].join("\n");
    const sessions: BuildSession[] = [];
    try {
      for (const secret of secrets) sessions.push(await openBuildSession(daemon.connection, { secrets: new Map([["tok", secret]]) }));
      const results = await Promise.all(
        secrets.map((secret, i) =>
          buildWith(dockerfile, { tag: `${uniqueName("kiln-secret")}:concurrent${i}`, session: sessions[i]!.id, buildArgs: { EXPECTED_SHA: sha256(secret) } }),
        ),
      );
      expect(results.map((r) => r.error)).toEqual([undefined, undefined]);
      expect(sessions.map((s) => s.served().get("tok"))).toEqual([1, 1]);
      for (const [i, result] of results.entries()) expectNoSecret(result.transcript, secrets[i]!, `build ${i}'s JSON stream`);
    } finally {
      await Promise.all(sessions.map((s) => s.close()));
    }
  });

  it("a session outlives the daemon's health probes: a build 12 s after opening still gets its secret", async () => {
    // The daemon probes /grpc.health.v1.Health/Check every few seconds and drops a session after
    // failed probes (buildkit session/grpc.go monitorHealth); a long build must keep its session.
    const secret = newSecret();
    const session = await openBuildSession(daemon.connection, { secrets: new Map([["tok", secret]]) });
    try {
      let ended = false;
      void session.closed.then(() => (ended = true));
      await new Promise((r) => setTimeout(r, 12_000));
      expect(ended).toBe(false);
      const dockerfile = [`FROM ${busybox}`, "ARG EXPECTED_SHA", checkingStep("type=secret,id=tok,required=true", "/run/secrets/tok"), ""].join("\n");
      const result = await buildWith(dockerfile, {
        tag: `${uniqueName("kiln-secret")}:late`,
        session: session.id,
        buildArgs: { EXPECTED_SHA: sha256(secret) },
      });
      expect(result.error).toBeUndefined();
      expect(session.served().get("tok")).toBe(1);
    } finally {
      await session.close();
    }
  });

  it("close() ends the connection and leaves no handle behind", async () => {
    const sockets = () => process.getActiveResourcesInfo().filter((kind) => kind === "PipeWrap" || kind === "TCPSocketWrap" || kind === "TLSWrap").length;
    // Earlier tests' daemon connections close asynchronously: start from a settled count.
    let before = sockets();
    for (let settled = 0; settled < 3; ) {
      await new Promise((r) => setTimeout(r, 100));
      const now = sockets();
      settled = now === before ? settled + 1 : 0;
      before = now;
    }
    const session = await openBuildSession(daemon.connection, { secrets: new Map([["tok", newSecret()]]) });
    expect(sockets()).toBe(before + 1);
    await session.close();
    await session.closed;
    await session.close(); // twice is fine
    expect(sockets()).toBe(before);
  });

  it("a process that opened a session, built with it and closed it exits by itself", async () => {
    const secret = newSecret();
    const dir = await mkdtemp(join(tmpdir(), "kiln-secrets-child-"));
    dirs.push(dir);
    await writeFile(
      join(dir, "Dockerfile"),
      [`FROM ${busybox}`, 'RUN --mount=type=secret,id=tok,required=true ["/bin/sh","-c","test -s /run/secrets/tok"]', ""].join("\n"),
    );
    const { stdout: tar } = await run("tar", ["-c", "-C", dir, "Dockerfile"], { encoding: "buffer" });
    await writeFile(join(dir, "context.tar"), tar);
    const tag = cleanup.image(`${uniqueName("kiln-secret")}:child`);

    const child = fork(join(HERE, "fixtures", "secret-session-child.ts"), [join(dir, "context.tar"), tag], {
      execArgv: ["--import", TSX],
      env: { ...process.env, KILN_TEST_SECRET: secret },
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    });
    // No IPC is used: without this the open channel alone would keep the child alive.
    child.disconnect();
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    const exitCode = await new Promise<number | null>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`the child did not exit within 60 s after closing its session (stdout: ${stdout}; stderr: ${stderr})`));
      }, 60_000);
      child.on("exit", (code) => {
        clearTimeout(timer);
        resolve(code);
      });
    });
    expect(stderr).toBe("");
    expect(exitCode).toBe(0);
    expect(JSON.parse(stdout)).toEqual({ ok: true, served: { tok: 1 } });
    expect(stdout + stderr).not.toContain(secret);
  });

  it("an aborted signal cancels the opening; aborting an open session closes it", async () => {
    const aborted = new AbortController();
    aborted.abort();
    await expect(openBuildSession(daemon.connection, { secrets: new Map(), signal: aborted.signal })).rejects.toSatisfy((error) =>
      CancelledError.isInstance(error),
    );

    const controller = new AbortController();
    const session = await openBuildSession(daemon.connection, { secrets: new Map([["tok", newSecret()]]), signal: controller.signal });
    controller.abort();
    await session.closed;
  });
});
