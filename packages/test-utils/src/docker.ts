/**
 * A small Docker CLI helper for tests: runs `docker` against the machine's daemon (or a given
 * DOCKER_HOST), makes unique names and cleans up what a test created. The CLI on PATH may be newer
 * than the daemon; it negotiates the API version itself. Builds made here use the classic builder
 * (DOCKER_BUILDKIT=0) so no buildx plugin or session is needed.
 */
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, open, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface DockerCliOptions {
  /** Bytes written to the command's stdin (e.g. a tar stream for `docker import -`). */
  input?: string | Buffer;
  /** Extra environment (e.g. `DOCKER_HOST`). */
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

/** Runs `docker <args>` and resolves with its stdout; rejects with stderr in the message. */
export function docker(args: string[], options: DockerCliOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      "docker",
      args,
      {
        env: { ...process.env, DOCKER_BUILDKIT: "0", DOCKER_CLI_HINTS: "false", ...options.env },
        maxBuffer: 64 * 1024 * 1024,
        timeout: options.timeoutMs ?? 600_000,
      },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`docker ${args.join(" ")} failed: ${stderr || error.message}`));
        else resolve(stdout);
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

/** Runs `docker <args>` with a stream (e.g. `tar` output) piped to stdin. */
export function dockerWithStdin(args: string[], stdinFrom: NodeJS.ReadableStream, env?: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("docker", args, { env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    stdinFrom.pipe(child.stdin);
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`docker ${args.join(" ")} exited ${code}: ${err}`))));
  });
}

/** A name no other test (or test process) uses: `<prefix>-<random>`, lowercase, valid as a repository. */
export function uniqueName(prefix = "kiln-test"): string {
  return `${prefix}-${randomBytes(5).toString("hex")}`;
}

/** True when the daemon has this image (by reference or id). */
export async function localImageExists(ref: string, env?: NodeJS.ProcessEnv): Promise<boolean> {
  try {
    await docker(["image", "inspect", ref], { env });
    return true;
  } catch {
    return false;
  }
}

/** `docker image inspect` as JSON (the first entry). */
export async function inspectImage(ref: string, env?: NodeJS.ProcessEnv): Promise<Record<string, any>> {
  const out = await docker(["image", "inspect", ref], { env });
  return (JSON.parse(out) as Array<Record<string, any>>)[0]!;
}

/** Runs a throw-away container of `image` and returns its stdout. */
export function runInImage(
  image: string,
  command: string[],
  options: { user?: string; entrypoint?: string; env?: NodeJS.ProcessEnv; platform?: string } = {},
): Promise<string> {
  const args = ["run", "--rm", "--network", "none"];
  if (options.user) args.push("--user", options.user);
  if (options.platform) args.push("--platform", options.platform);
  if (options.entrypoint !== undefined) args.push("--entrypoint", options.entrypoint);
  return docker([...args, image, ...command], { env: options.env });
}

/** Removes images (ignoring ones already gone); used in `afterAll`. */
export async function removeImages(refs: Iterable<string>, env?: NodeJS.ProcessEnv): Promise<void> {
  const list = [...new Set(refs)];
  if (list.length === 0) return;
  await docker(["image", "rm", "-f", ...list], { env }).catch(() => undefined);
}

/** `127.0.0.1:5000/team/app:tag` → `team/app`: the image name without registry host, tag or digest. */
function repositoryName(ref: string): string {
  const withoutDigest = ref.split("@")[0]!;
  const lastSlash = withoutDigest.lastIndexOf("/");
  const colon = withoutDigest.lastIndexOf(":");
  const repo = colon > lastSlash ? withoutDigest.slice(0, colon) : withoutDigest;
  const [first, ...rest] = repo.split("/");
  return rest.length > 0 && (first!.includes(".") || first!.includes(":") || first === "localhost") ? rest.join("/") : repo;
}

/** Collects names/refs a test creates and removes them all at the end. */
export class DockerCleanup {
  private readonly images = new Set<string>();
  constructor(private readonly env?: NodeJS.ProcessEnv) {}
  image(ref: string): string {
    this.images.add(ref);
    return ref;
  }
  async run(): Promise<void> {
    // @kiln/docker's incremental builds leave stage images (`kiln-stage/<name>:<key>`) beside each image.
    const stageRepos = new Set([...this.images].map((ref) => `kiln-stage/${repositoryName(ref)}`));
    const stages: string[] = [];
    for (const repo of stageRepos) {
      const listed = await docker(["image", "ls", "--filter", "label=dev.kiln.stage=1", "--format", "{{.Repository}}:{{.Tag}}", repo], { env: this.env }).catch(
        () => "",
      );
      stages.push(...listed.split("\n").filter((line) => line.trim() !== "" && !line.endsWith(":<none>")));
    }
    await removeImages([...this.images, ...stages], this.env);
    this.images.clear();
  }
}

/**
 * A cross-process lock (a file created with O_EXCL holding the owner's pid), so two test processes
 * that both need the same machine-wide fixture build it once. A lock whose owner died is taken over.
 */
export async function withMachineLock<T>(name: string, fn: () => Promise<T>, timeoutMs = 900_000): Promise<T> {
  const dir = join(tmpdir(), "kiln-test-locks");
  await mkdir(dir, { recursive: true });
  const path = join(dir, `${name}.lock`);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const handle = await open(path, "wx");
      await handle.writeFile(String(process.pid));
      await handle.close();
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const owner = Number(await readFile(path, "utf8").catch(() => ""));
      if (owner && !isAlive(owner)) {
        await rm(path, { force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`Timed out waiting for machine lock ${path} (held by pid ${owner})`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(path, { force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
