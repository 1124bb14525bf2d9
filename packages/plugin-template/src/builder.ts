/**
 * MyImageBuilder: the reference guide's builder shape, made real enough to test.
 *
 * "Building" here means what a remote build system receives from Kiln: the Dockerfile rendered by
 * @kiln/core and the build context streamed by @kiln/core, written to the catalogue (store.ts)
 * together with a record the checker reads. When you fork the template, keep the option handling
 * and the events, and replace `runBuild` with a call to your CI/CD API or build cluster.
 */
import { createHash, randomUUID } from "node:crypto";
import { createWriteStream } from "node:fs";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { CancelledError, type BuildImageOptions, type Image, type ImageBuild, type ImageBuilder, type ImageCheckerLike } from "@kiln/core";
import { createBuildContext, emit, pinSources, renderDockerfile, repositoryOf } from "@kiln/core/plugin";
import { MyImageChecker } from "./checker.js";
import { newArtifactDir, readRecord, writeRecord, type CatalogueRecord } from "./store.js";

/** The name this builder is registered under in package.json (`kiln.imageBuilders`). */
export const BUILDER_NAME = "my_builder";

export class MyImageBuilder implements ImageBuilder {
  /** Checkers the engine consults, in order, before it calls buildImage. */
  getCheckers(): readonly ImageCheckerLike[] {
    return [MyImageChecker];
  }

  async buildImage(declared: Image, options: BuildImageOptions = {}): Promise<ImageBuild> {
    const { dryRun = false, wait = true, force = false, signal, onEvent } = options;
    // One snapshot of the sources for the whole build: the tag below and the context streamed later
    // come from the same files (a file changed in between fails the build with SourceChangedError).
    // The engine has pinned it already; this covers a builder called directly.
    const image = pinSources(declared);
    const uri = image.uri;
    const repository = repositoryOf(image); // what the engine passes checkers: `<registry>/<name>`
    const tag = image.tag;
    signal?.throwIfAborted();

    // dryRun: never build or store anything; report the URI the build would produce.
    if (dryRun) {
      emit(onEvent, { type: "build.log", image: uri, line: `dry run: would build ${uri} for ${image.platform.join(", ")}` });
      return { uri };
    }

    // Without force, a build the catalogue already holds for every platform is not repeated
    // (the engine checked already, but a builder may be called directly, or raced by another process).
    if (!force) {
      const existing = await readRecord(repository, tag);
      if (existing && image.platform.every((p) => existing.platforms.includes(p))) {
        emit(onEvent, { type: "build.log", image: uri, line: `${uri} is already in the catalogue; not rebuilding (use force to rebuild)` });
        return { uri: existing.uri, digest: existing.digest };
      }
    }

    const buildId = randomUUID();
    const running = this.runBuild(image, repository, tag, buildId, signal, onEvent, options.beforePush);
    if (wait) return running;

    // wait: false — return at once with a handle; `wait()` follows the build to its end.
    // A background failure must not become an unhandled rejection before anyone calls wait().
    running.catch(() => undefined);
    return { uri, remoteRun: { id: buildId }, wait: () => running };
  }

  /** Runs the build in a fresh artifact directory, removed again if the build fails or is cancelled. */
  private async runBuild(
    image: Image,
    repository: string,
    tag: string,
    buildId: string,
    signal: AbortSignal | undefined,
    onEvent: BuildImageOptions["onEvent"],
    beforePush: BuildImageOptions["beforePush"],
  ): Promise<ImageBuild> {
    const artifactDir = await newArtifactDir(buildId);
    try {
      return await this.buildInto(artifactDir, image, repository, tag, signal, onEvent, beforePush);
    } catch (error) {
      // A failed or cancelled build leaves nothing behind: no half-written Dockerfile or context.tar.
      await rm(artifactDir, { recursive: true, force: true }).catch(() => undefined);
      throw error;
    }
  }

  /** The build itself: render, stream the context, record. Replace with your build system's API. */
  private async buildInto(
    artifactDir: string,
    image: Image,
    repository: string,
    tag: string,
    signal: AbortSignal | undefined,
    onEvent: BuildImageOptions["onEvent"],
    beforePush: BuildImageOptions["beforePush"],
  ): Promise<ImageBuild> {
    const uri = image.uri;
    const total = 3;
    const digest = createHash("sha256");

    emit(onEvent, { type: "build.step", image: uri, step: "render Dockerfile", index: 1, total });
    const dockerfile = renderDockerfile(image, { buildkit: true });
    await writeFile(join(artifactDir, "Dockerfile"), dockerfile);
    digest.update(dockerfile);
    checkAborted(signal, uri);

    emit(onEvent, { type: "build.step", image: uri, step: "stream build context", index: 2, total });
    const context = await createBuildContext(image, { dockerfile });
    let bytes = 0;
    const measure = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        digest.update(chunk);
        bytes += chunk.length;
        done(null, chunk);
      },
    });
    try {
      await pipeline(context.stream, measure, createWriteStream(join(artifactDir, "context.tar")), { signal });
    } catch (error) {
      checkAborted(signal, uri);
      throw error;
    }
    emit(onEvent, { type: "build.log", image: uri, line: `context: ${context.files.length} files, ${bytes} bytes` });

    emit(onEvent, { type: "build.step", image: uri, step: "record in catalogue", index: 3, total });
    // Recording is this builder's push: with a shared lock provider the engine confirms the build
    // lease here, and a lost lease rejects (LeaseLostError) — nothing is recorded, another host builds.
    // Call it right before every push of yours (each retry too), never earlier.
    await beforePush?.();
    checkAborted(signal, uri);
    const record: CatalogueRecord = {
      repository,
      tag,
      uri,
      platforms: [...image.platform],
      digest: `sha256:${digest.digest("hex")}`,
      builtAt: new Date().toISOString(),
      artifactDir,
    };
    await writeRecord(record);
    emit(onEvent, { type: "push.done", image: uri, digest: record.digest });
    return { uri, digest: record.digest };
  }
}

function checkAborted(signal: AbortSignal | undefined, uri: string): void {
  if (signal?.aborted) throw new CancelledError(`Build of ${uri} cancelled`, { cause: signal.reason });
}
