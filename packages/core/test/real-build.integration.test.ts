/**
 * One real build (issue 2, item 8): rendered Dockerfiles + streamed build contexts go to the real Docker
 * Engine — the classic builder through the docker CLI (`docker build -` reading the tar on stdin) and
 * BuildKit through the Engine API (`POST /build?version=2`) — on a busybox base image made here from
 * `FROM scratch`. The results are run and inspected: files, env, workdir, user, labels, ownership.
 * Everything created is removed afterwards (unique tags per run).
 */
import { spawn } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBuildContext } from "../src/context.js";
import { dockerBuildTarget, renderDockerfile } from "../src/dockerfile.js";
import { Image } from "../src/image.js";

const RUN_ID = `${process.pid}-${Date.now().toString(36)}`;
const BASE = `kiln-a-test/busybox:${RUN_ID}`;
const created: string[] = [];
const DOCKER_SOCKET = process.env.DOCKER_HOST?.startsWith("unix://") ? process.env.DOCKER_HOST.slice("unix://".length) : "/var/run/docker.sock";
let dir: string;
let baseId: string | undefined;
const p = (...parts: string[]) => join(dir, ...parts);

function docker(args: string[], { input, env }: { input?: Readable; env?: Record<string, string> } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("docker", args, { env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`docker ${args.join(" ")} exited ${code}\n${err}\n${out}`))));
    if (input) {
      input.on("error", (e) => child.stdin.destroy(e));
      input.pipe(child.stdin);
    } else child.stdin.end();
  });
}

/** Classic builder through the CLI, context tar on stdin. */
async function buildClassic(image: Image, tag: string): Promise<void> {
  const context = createBuildContext(image, { dockerfile: renderDockerfile(image, { buildkit: false }) });
  const args = ["build", "-q", "--force-rm", "-t", tag, "-f", context.dockerfilePath];
  if (image.spec.base.kind === "dockerfile") {
    for (const [k, v] of image.spec.base.buildArgs) args.push("--build-arg", `${k}=${v}`);
  }
  const target = dockerBuildTarget(image);
  if (target) args.push("--target", target);
  created.push(tag);
  await docker([...args, "-"], { input: context.stream, env: { DOCKER_BUILDKIT: "0" } });
}

/** BuildKit through the Engine API: the daemon answers 200 and reports failures inside the stream. */
async function buildBuildKit(image: Image, tag: string): Promise<void> {
  const context = createBuildContext(image, { dockerfile: renderDockerfile(image, { buildkit: true }) });
  const query = new URLSearchParams({ version: "2", t: tag, dockerfile: context.dockerfilePath, rm: "1" });
  const target = dockerBuildTarget(image);
  if (target) query.set("target", target);
  created.push(tag);
  const body = await new Promise<string>((resolve, reject) => {
    const req = request({ socketPath: DOCKER_SOCKET, method: "POST", path: `/build?${query}`, headers: { "Content-Type": "application/x-tar" } }, (res) => {
      let text = "";
      res.on("data", (d: Buffer) => (text += d.toString()));
      res.on("end", () => (res.statusCode === 200 ? resolve(text) : reject(new Error(`build HTTP ${res.statusCode}: ${text}`))));
      res.on("error", reject);
    });
    req.on("error", reject);
    context.stream.on("error", (e) => req.destroy(e));
    context.stream.pipe(req);
  });
  const errors = body
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { errorDetail?: { message: string } })
    .filter((m) => m.errorDetail);
  expect(errors.map((e) => e.errorDetail!.message)).toEqual([]);
}

const run = (tag: string, script: string, user?: string) =>
  docker(["run", "--rm", ...(user ? ["--user", user] : []), "--entrypoint", "/bin/sh", tag, "-c", script]);
const inspect = async (tag: string, format: string) => (await docker(["image", "inspect", "--format", format, tag])).trim();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "kiln-real-build-"));
  // The base image: busybox-static in an empty image, with a root user and /tmp.
  mkdirSync(p("base"));
  copyFileSync("/bin/busybox", p("base", "busybox"));
  writeFileSync(
    p("base", "Dockerfile"),
    [
      "FROM scratch",
      "COPY busybox /bin/busybox",
      'RUN ["/bin/busybox", "sh", "-c", "/bin/busybox --install -s /bin && mkdir -p /etc /tmp /root && echo root:x:0:0:root:/root:/bin/sh > /etc/passwd && echo root:x:0: > /etc/group && chmod 1777 /tmp"]',
      'CMD ["/bin/sh"]',
      "",
    ].join("\n"),
  );
  created.push(BASE);
  await docker(["build", "-q", "--force-rm", "-t", BASE, p("base")], { env: { DOCKER_BUILDKIT: "0" } });
  baseId = await inspect(BASE, "{{.Id}}");

  // Project files, some with names Docker would otherwise interpret.
  mkdirSync(p("project", "code", "pkg"), { recursive: true });
  writeFileSync(p("project", "code", "main.py"), "print('main')\n");
  writeFileSync(p("project", "code", "pkg", "util.py"), "X = 1\n");
  writeFileSync(p("project", "code", "debug.log"), "ignored\n");
  writeFileSync(p("project", "code", "run.sh"), "#!/bin/sh\necho ran\n", { mode: 0o755 });
  writeFileSync(p("project", ".dockerignore"), "*.log\n");
  writeFileSync(p("project", "we$ird 'name' \"q\".txt"), "weird content\n");
  writeFileSync(p("project", "owned.txt"), "owned\n");
}, 300_000);

afterAll(async () => {
  for (const tag of created.reverse()) await docker(["image", "rm", "-f", tag]).catch(() => undefined);
  // The classic builder leaves untagged intermediate images (e.g. of stages it built but did not tag)
  // that keep the base alive: remove everything descending from our base, children first.
  if (baseId) await removeDescendants(baseId);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function removeDescendants(rootId: string): Promise<void> {
  const ids = (await docker(["images", "-a", "-q", "--no-trunc"])).split("\n").filter(Boolean);
  if (ids.length === 0) return;
  const parents = new Map<string, string>();
  for (const line of (await docker(["image", "inspect", "--format", "{{.Id}} {{.Parent}}", ...new Set(ids)])).split("\n")) {
    const [id, parent] = line.trim().split(" ");
    if (id && parent) parents.set(id, parent);
  }
  const depth = (id: string): number => {
    let d = 0;
    for (let cur: string | undefined = id; cur && cur !== rootId; cur = parents.get(cur)) d++;
    return d;
  };
  const descends = (id: string) => {
    for (let cur: string | undefined = id; cur; cur = parents.get(cur)) if (cur === rootId) return true;
    return false;
  };
  const mine = [...new Set(ids)].filter(descends).sort((a, b) => depth(b) - depth(a));
  for (const id of mine) await docker(["image", "rm", "-f", id]).catch(() => undefined);
}

function appImage(): Image {
  return Image.fromBase(BASE, { name: "kiln-a-test/app" })
    .withEnvVars({ GREETING: 'hello "world" $HOME `x` \\ end', PLAIN: "1" })
    .withWorkdir("/srv/my app")
    .withCommands(
      "echo app:x:1234:1234::/home/app:/bin/sh >> /etc/passwd && echo app:x:1234: >> /etc/group && mkdir -p /home/app && chown app:app /home/app",
      "echo 'multi line' > /created.txt\necho second >> /created.txt",
    )
    .withDockerignore(p("project", ".dockerignore"))
    .withSourceFolder(p("project", "code"))
    .withSourceFile(p("project", "we$ird 'name' \"q\".txt"), "/data/")
    .withLabels({ "org.example.note": 'a "b" $c', "org.example.plain": "x" })
    .withUser("app")
    .withSourceFile(p("project", "owned.txt"), "/home/app/owned.txt");
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
const PROBE = [
  'printf "%s\\n" "$GREETING" "$PLAIN"',
  "pwd",
  "id -u",
  "cat /created.txt",
  "ls -A code code/pkg | tr '\\n' ' '; echo",
  "code/run.sh",
  `cat ${shellQuote("/data/we$ird 'name' \"q\".txt")}`,
  "stat -c '%U %a' /home/app/owned.txt 'code/main.py'",
].join("; ");

async function assertAppImage(tag: string): Promise<void> {
  const out = (await run(tag, PROBE)).split("\n");
  expect(out[0]).toBe('hello "world" $HOME `x` \\ end');
  expect(out[1]).toBe("1");
  expect(out[2]).toBe("/srv/my app"); // relative destinations and the working directory as declared
  expect(out[3]).toBe("1234"); // USER app
  expect(out.slice(4, 6)).toEqual(["multi line", "second"]);
  expect(out[6]!.replace(/\s+/g, " ").trim()).toBe("code: main.py pkg run.sh code/pkg: util.py"); // debug.log ignored
  expect(out[7]).toBe("ran"); // executable bit kept
  expect(out[8]).toBe("weird content");
  expect(out[9]).toBe("app 644"); // chowned to the declared user
  expect(out[10]).toBe("root 644"); // copied before USER: not chowned
  expect(await inspect(tag, '{{index .Config.Labels "org.example.note"}}')).toBe('a "b" $c');
  expect(await inspect(tag, "{{.Config.User}}")).toBe("app");
  expect(await inspect(tag, "{{.Config.WorkingDir}}")).toBe("/srv/my app");
}

describe("real builds on the local Docker Engine", () => {
  it("classic builder: env, workdir, commands, user, labels, source folder and files", async () => {
    const image = appImage();
    const tag = `kiln-a-test/app:classic-${RUN_ID}`;
    await buildClassic(image, tag);
    await assertAppImage(tag);
  });

  it("BuildKit (Engine API): the same spec gives the same image contents", async () => {
    const tag = `kiln-a-test/app:buildkit-${RUN_ID}`;
    await buildBuildKit(appImage(), tag);
    await assertAppImage(tag);
  });

  it("fromDockerfile with build args, plus Kiln layers appended", async () => {
    mkdirSync(p("df"));
    writeFileSync(p("df", "Dockerfile"), `FROM ${BASE}\nARG MSG\nRUN echo "$MSG" > /msg\n`);
    writeFileSync(p("df", "extra.txt"), "extra\n");
    const image = Image.fromDockerfile(p("df", "Dockerfile"), { buildArgs: { MSG: "from arg" } })
      .withEnvVars({ ADDED: "yes" })
      .withSourceFile(p("df", "extra.txt"), "/opt/extra.txt");
    const tag = `kiln-a-test/df:${RUN_ID}`;
    await buildClassic(image, tag);
    expect((await run(tag, 'cat /msg; echo "$ADDED"; cat /opt/extra.txt')).split("\n").slice(0, 3)).toEqual(["from arg", "yes", "extra"]);
  });

  it("fromDockerfile with a target stage gets Kiln layers in a stage of its own", async () => {
    mkdirSync(p("staged"));
    writeFileSync(p("staged", "Dockerfile"), `FROM ${BASE} AS build\nRUN echo built > /built\n\nFROM ${BASE}\nRUN echo final > /final\n`);
    const image = Image.fromDockerfile(p("staged", "Dockerfile"), { target: "build" }).withCommands("echo kiln > /kiln");
    const tag = `kiln-a-test/staged:${RUN_ID}`;
    await buildClassic(image, tag);
    expect((await run(tag, "cat /built /kiln; test -e /final && echo has-final || echo no-final")).trim().split("\n")).toEqual(["built", "kiln", "no-final"]);
  });

  it("a command's failure fails the build (RUN exec form keeps the shell's exit status)", async () => {
    const image = Image.fromBase(BASE).withCommands("echo about to fail; exit 3");
    await expect(buildClassic(image, `kiln-a-test/fail:${RUN_ID}`)).rejects.toThrow(/returned a non-zero code: 3/);
  });
});
