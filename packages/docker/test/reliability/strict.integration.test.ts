/**
 * Strict mode with the Docker builder (issue 15 item 2), through the real `kiln` CLI in a project
 * that installs @kiln/core and @kiln/docker, against a real registry behind htpasswd Basic auth.
 *
 * The builder asks two checkers: the local daemon's, which speaks only for registry-less names
 * (`answersFor`), and the registry's. With anonymous credentials the registry's checker cannot tell
 * (401); the local one must not count as an "absent" answer — so `--strict` fails before anything is
 * built, naming the checker and the reason. With the right credentials the same strict run goes on.
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startRegistry, type TestRegistry } from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { linkedKilnProject, runKiln } from "./kilnProject.js";

let registry: TestRegistry;
let project: string;
let scratch: string;

beforeAll(async () => {
  registry = await startRegistry({ auth: "basic" });
  project = linkedKilnProject("kiln-rel-strict-", "strict-app");
  scratch = mkdtempSync(join(tmpdir(), "kiln-rel-strict-"));
  writeFileSync(
    join(project, "images.ts"),
    `
import { Image } from "@kiln/core";
export default Image.fromBase("kiln-test/busybox:1.35", { registry: process.env.STRICT_REGISTRY!, name: "strict/app" })
  .withEnvVars({ RUN: "${process.pid}-${Date.now()}" });
`,
  );
}, 180_000);
afterAll(async () => {
  await registry?.stop();
  for (const dir of [project, scratch]) if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A DOCKER_CONFIG directory: empty (anonymous) or holding the registry's credentials. */
function dockerConfig(withCredentials: boolean): string {
  const dir = mkdtempSync(join(scratch, "docker-config-"));
  mkdirSync(dir, { recursive: true });
  const { username, password } = registry.credentials!;
  const auths = withCredentials ? { [registry.host]: { auth: Buffer.from(`${username}:${password}`).toString("base64") } } : {};
  writeFileSync(join(dir, "config.json"), JSON.stringify({ auths }));
  return dir;
}

const kiln = (args: string[], env: Record<string, string>) =>
  runKiln(project, args, {
    env: { ...process.env, STRICT_REGISTRY: registry.host, KILN_LOCK_DIR: join(scratch, "locks"), KILN_STRICT: "", KILN_IMAGE_CHECKERS: "", ...env },
    timeoutMs: 120_000,
  });
type Event = { type: string; checker?: string; result?: string; error?: { code?: string; message?: string } };
const eventsOf = (stderr: string): Event[] =>
  stderr
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Event);

describe("kiln build --strict with the Docker builder, anonymous on an auth registry", () => {
  it("fails before building (exit 2, KILN_CHECK_FAILED naming docker-registry); the local checker is not asked", async () => {
    const run = await kiln(["build", "images.ts", "--strict", "--json"], { DOCKER_CONFIG: dockerConfig(false) });
    const events = eventsOf(run.stderr);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stdout).toBe("");
    expect(events.some((e) => e.type === "build.start")).toBe(false);
    expect(events.filter((e) => e.type === "check.start").map((e) => e.checker)).toEqual(["docker-registry"]);
    const error = events.find((e) => e.type === "error")?.error;
    expect(error?.code).toBe("KILN_CHECK_FAILED");
    expect(error?.message).toMatch(/strict mode\): docker-registry: /);
    expect(run.stderr).not.toContain(registry.credentials!.password);
  }, 180_000);

  it("with the registry's credentials the strict check can tell: a dry run says it would build (exit 0)", async () => {
    const run = await kiln(["build", "images.ts", "--strict", "--dry-run", "--json"], { DOCKER_CONFIG: dockerConfig(true) });
    expect(run.code, run.stderr).toBe(0);
    const events = eventsOf(run.stderr);
    expect(events.filter((e) => e.type === "check.result").map((e) => [e.checker, e.result])).toEqual([["docker-registry", "absent"]]);
    expect(run.stdout.trim()).toMatch(new RegExp(`^${registry.host}/strict/app:[0-9a-f]{32}$`));
  }, 180_000);
});
