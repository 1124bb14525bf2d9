// Set-up shared by the oci builder's integration tests: a loopback registry holding a locally made
// base, builders with a layer-digest cache of the test's own (the machine's shared one may already know
// the layers, and a test that expects work done must not find it cached), temp dirs removed after, and
// `docker run` of what was pushed.
import { mkdtempSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll } from "vitest";
import { RegistryClient, type BuildEvent, type Image } from "@kiln/core";
import { docker, startRegistry, type TestRegistry } from "@kiln/test-utils";
import { OciImageBuilder } from "../src/index.js";

/** Temp dirs made by a test file, all removed by `removeAll()` in its afterAll. */
export class TempDirs {
  private readonly dirs: string[] = [];

  /** A new dir (its real path: some tools compare paths after resolving links). */
  make(prefix: string): string {
    return this.track(realpathSync(mkdtempSync(join(tmpdir(), prefix))));
  }

  track(dir: string): string {
    this.dirs.push(dir);
    return dir;
  }

  removeAll(): void {
    for (const dir of this.dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  }
}

/** An open loopback registry and `localImage` pushed into it as `repoTag`; no local tag is left behind. */
export async function registryWithBase(localImage: string, repoTag: string, pushTimeoutMs = 120_000): Promise<{ registry: TestRegistry; baseRef: string }> {
  const registry = await startRegistry({ auth: "none" });
  const baseRef = `${registry.host}/${repoTag}`;
  await docker(["tag", localImage, baseRef]);
  await docker(["push", baseRef], { timeoutMs: pushTimeoutMs });
  await docker(["image", "rm", baseRef]).catch(() => undefined);
  return { registry, baseRef };
}

/**
 * registryWithBase for a whole test file: started in its beforeAll, stopped in its afterAll (with
 * `tempDirs` removed). Read `.registry` and `.ref` inside the tests.
 */
export function baseRegistryForFile(
  localImage: () => Promise<string>,
  repoTag: string,
  { tempDirs, pushTimeoutMs = 120_000, hookTimeoutMs = 300_000 }: { tempDirs?: TempDirs; pushTimeoutMs?: number; hookTimeoutMs?: number } = {},
): { registry: TestRegistry; ref: string } {
  const base = {} as { registry: TestRegistry; ref: string };
  beforeAll(async () => {
    const { registry, baseRef } = await registryWithBase(await localImage(), repoTag, pushTimeoutMs);
    Object.assign(base, { registry, ref: baseRef });
  }, hookTimeoutMs);
  afterAll(async () => {
    await base.registry?.stop();
    tempDirs?.removeAll();
  });
  return base;
}

/** Reproducible layers: no SOURCE_DATE_EPOCH from the caller's shell. */
export const OCI_ENV: NodeJS.ProcessEnv = { ...process.env, SOURCE_DATE_EPOCH: "" };
/** OCI_ENV with no Docker Engine reachable: the oci builder never needs one. */
export const NO_ENGINE_ENV: NodeJS.ProcessEnv = { ...OCI_ENV, DOCKER_HOST: "unix:///nonexistent/docker.sock" };

/** An oci builder with a registry client that ignores ~/.docker and the given layer cache. */
export function ociBuilder(layerCache: string | false, env: NodeJS.ProcessEnv = OCI_ENV): OciImageBuilder {
  return new OciImageBuilder({ client: new RegistryClient({ useDockerConfig: false }), layerCache, env });
}

/** `docker pull` of a pushed image, `docker run --rm --network none` of `command` in it; the local image removed after. */
export async function runPulled(uri: string, command: string[], { pullTimeoutMs = 120_000, runTimeoutMs = 120_000 } = {}): Promise<string> {
  try {
    await docker(["pull", uri], { timeoutMs: pullTimeoutMs });
    return await docker(["run", "--rm", "--network", "none", uri, ...command], { timeoutMs: runTimeoutMs });
  } finally {
    await docker(["image", "rm", "-f", uri]).catch(() => undefined);
  }
}

/** buildImage with its events recorded; `steps` are the build.step names in order (e.g. "COPY sourceFolder -> /app (cached)"). */
export async function buildRecordingSteps(
  builder: OciImageBuilder,
  image: Image,
): Promise<{ built: Awaited<ReturnType<OciImageBuilder["buildImage"]>>; steps: string[]; events: BuildEvent[] }> {
  const events: BuildEvent[] = [];
  const built = await builder.buildImage(image, { onEvent: (e) => events.push(e) });
  return { built, steps: events.filter((e) => e.type === "build.step").map((e) => (e as { step: string }).step), events };
}
