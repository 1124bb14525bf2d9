/**
 * One `POST /build` for one platform: a Dockerfile and its context tar streamed straight into the
 * request body (never copied to disk), and the whole answer followed to the end by `followBuild`.
 * `buildOne` is the one-shot build of a whole image (the rendered Dockerfile and the full context);
 * incremental.ts sends one stage at a time through `sendBuild`.
 *
 * With BuildKit, a context whose Dockerfile Kiln would have to add as a hidden file (a `fromDockerfile`
 * image whose Dockerfile lies outside its context or is excluded by its .dockerignore) is not sent as
 * the body: BuildKit through the Engine API does not re-apply .dockerignore to an uploaded tar, so the
 * hidden file would reach a `COPY .`. It is served through the build's session instead, as the docker
 * CLI does (`remote=client-session`, session/contextSources.ts): the context exactly as listed, the
 * Dockerfile as a source of its own, and the daemon applies .dockerignore itself. Other contexts keep
 * the tar body: nothing is hidden in them, and it is the path bench/docker-build.mjs measured (the same
 * filesync server in @kiln/buildkit, through its tunnel, ran ~3× slower on a cold 500 MB context).
 *
 * Every context is streamed from the build's source snapshot (`sourcesOf`): the files and digests the
 * content tag was computed from. A file that changed since fails the context stream with core's
 * SourceChangedError; the daemon then has an incomplete archive (nothing is built or tagged), and that
 * error — not the broken request it causes — is what the build fails with.
 */
import { Readable } from "node:stream";
import {
  BuildFailedError,
  CancelledError,
  KilnError,
  MissingSecretError,
  SourceChangedError,
  type Architecture,
  type EventListener,
  type Image,
} from "@kiln/core";
import { createBuildContext, dockerBuildTarget, renderDockerfile, snapshotOf, snapshotSpec, type BuildContext, type SourceSnapshot } from "@kiln/core/plugin";
import { followBuild, type BuildOutcome } from "./buildProgress.js";
import { openBuildSession, type BuildSession } from "../session/buildSession.js";
import type { DockerDaemon } from "../daemon/daemon.js";
import { explainImagePullFailure } from "./imagePullFailure.js";
import { recordLostStepContainer, StepContainers } from "../orphans/orphanContainers.js";
import { OrphanLedger } from "../orphans/orphanLedger.js";
import { sessionContext, SESSION_DOCKERFILE_NAME, type ContextSource } from "../session/contextSources.js";

export interface BuildOneOptions {
  image: Image;
  /** The image's URI as the build started (an Image's tag follows its files, and costs a walk to compute). */
  uri?: string;
  platform: Architecture;
  /** The local reference to tag the result with (`repo:tag`). */
  tagRef: string;
  buildkit: boolean;
  labels: Record<string, string>;
  networkMode?: string;
  noCache?: boolean;
  pull?: boolean;
  signal?: AbortSignal;
  onEvent?: EventListener;
  redact: (text: string) => string;
  /** Where a step container left by a build that lost its daemon is recorded (default: beside Kiln's locks). */
  orphans?: OrphanLedger;
  /** Resolved build secret values by id (core's resolveBuildSecrets), served to BuildKit through a session. */
  secrets?: ReadonlyMap<string, string>;
  /** The sources to send (default: `sourcesOf(image, uri)`). */
  snapshot?: SourceSnapshot;
}

export interface SendBuildOptions extends BuildOneOptions {
  context: BuildContext;
  /**
   * What `context` was made from. With BuildKit, a context that carries a hidden Dockerfile is then
   * served from it through the session (`remote=client-session`) instead of being sent.
   */
  contextSource?: ContextSource;
  target?: string;
  buildArgs?: Record<string, string>;
}

export interface SentBuild extends BuildOutcome {
  /** Bytes of build context the daemon read. */
  contextBytes: number;
}

/**
 * The sources a build of `image` sends: the snapshot the engine pinned for it (core's pinSources), else
 * — a builder called directly — one taken now, which must give the content tag the build is tagging
 * (`uri`'s tag, computed from the files a moment ago) unless the image has an explicit tag.
 */
export function sourcesOf(image: Image, uri: string): SourceSnapshot {
  const pinned = snapshotOf(image);
  if (pinned !== undefined) return pinned;
  const { tag, snapshot } = snapshotSpec(image);
  if (image.spec.tag === undefined && !uri.endsWith(`:${tag}`)) {
    throw new SourceChangedError(`The sources of ${uri} changed between computing its content tag and building it (the files now give tag ${tag})`, {
      hint: "Nothing was built. Stop whatever is writing to the source tree, then run the build again: it lists and hashes the sources anew.",
      details: { image: uri, tagNow: tag },
    });
  }
  return snapshot;
}

/** The whole image in one build (the rendered Dockerfile, the full context). */
export async function buildOne(daemon: DockerDaemon, options: BuildOneOptions): Promise<SentBuild> {
  const { image } = options;
  const snapshot = options.snapshot ?? sourcesOf(image, options.uri ?? image.uri);
  const dockerfile = renderDockerfile(image, { buildkit: options.buildkit });
  const context = createBuildContext(image, { dockerfile, snapshot });
  const base = image.spec.base;
  const buildArgs = base.kind === "dockerfile" ? Object.fromEntries(base.buildArgs) : {};
  return sendBuild(daemon, { ...options, context, contextSource: { spec: image.spec, dockerfile, snapshot }, target: dockerBuildTarget(image), buildArgs });
}

/** core's context.ts places a Dockerfile it cannot use in place here, and names it in `.dockerignore`. */
const HIDDEN_DOCKERFILES = new Set([".dockerfile.kiln", "kiln-layers/Dockerfile"]);

/**
 * Whether this build sends its context through the session: BuildKit, a context whose Dockerfile
 * would be hidden (the only case where the tar body differs from what `COPY .` must see). Every
 * DOCKER_HOST takes a session (ssh:// through `docker system dial-stdio`, session/sshDialStdio.ts).
 */
function contextThroughSession(daemon: DockerDaemon, options: SendBuildOptions): options is SendBuildOptions & { contextSource: ContextSource } {
  return options.buildkit && options.contextSource !== undefined && HIDDEN_DOCKERFILES.has(options.context.dockerfilePath);
}

export async function sendBuild(daemon: DockerDaemon, options: SendBuildOptions): Promise<SentBuild> {
  const { platform, context } = options;
  const uri = options.uri ?? options.image.uri;
  const buildArgs = options.buildArgs ?? {};
  const viaSession = contextThroughSession(daemon, options);
  let contextBytes = 0;
  // The context's own failure (a source changed: SourceChangedError) is the build's error, whatever the
  // broken request makes the daemon answer.
  let contextFailure: unknown;
  context.stream.on("error", (error) => (contextFailure ??= error));
  const failedContext = () => (KilnError.isInstance(contextFailure) ? contextFailure : undefined);
  const counted = Readable.from(
    countBytes(context.stream, (n) => (contextBytes += n)),
    { objectMode: false },
  );
  const abortContext = () => {
    counted.destroy();
    context.stream.destroy();
  };
  options.signal?.addEventListener("abort", abortContext, { once: true });
  let session: BuildSession | undefined;
  try {
    options.signal?.throwIfAborted();
    // Opened before the build request (the daemon waits for a session id it does not know yet), one
    // per request: the daemon asks it for each secret a `RUN --mount=type=secret` step needs, and
    // for the context and Dockerfile of a build sent with `remote=client-session`.
    if (viaSession) {
      const served = await sessionContext(options.contextSource);
      session = await openBuildSession(daemon.connection, {
        secrets: options.secrets,
        sources: {
          ...served,
          onProgress: (progress) => {
            if (progress.done) contextBytes += progress.bytes;
          },
          onFailure: (error) => (contextFailure ??= error),
        },
        signal: options.signal,
      });
    } else if (options.secrets && options.secrets.size > 0) {
      session = await openBuildSession(daemon.connection, { secrets: options.secrets, signal: options.signal });
    }
    let response;
    try {
      response = await daemon.dial({
        method: "POST",
        path: "/build",
        query: {
          t: options.tagRef,
          dockerfile: viaSession ? SESSION_DOCKERFILE_NAME : context.dockerfilePath,
          platform,
          version: options.buildkit ? "2" : "1",
          labels: options.labels,
          buildargs: Object.keys(buildArgs).length ? buildArgs : undefined,
          target: options.target,
          networkmode: options.networkMode,
          nocache: options.noCache ? "1" : undefined,
          pull: options.pull ? "1" : undefined,
          rm: "1",
          forcerm: "1",
          session: session?.id,
          remote: viaSession ? "client-session" : undefined,
        },
        // A session-served context: an empty body, and said to be empty — the daemon holds back its
        // output until it has read the body to the end, which it never does here (moby
        // wrapOutputBufferedUntilRequestRead). The tar stream is never read: no file is opened for it.
        body: viaSession ? Readable.from([]) : counted,
        headers: viaSession ? { "Content-Type": "application/x-tar", "Content-Length": "0" } : { "Content-Type": "application/x-tar" },
        signal: options.signal,
        statusCodes: { 200: true, 400: "bad parameter", 500: "server error" },
      });
    } catch (error) {
      throw failedContext() ?? requestFailure(daemon, error, options);
    }
    const stepContainers = new StepContainers();
    try {
      const outcome = await followBuild(response, {
        image: uri,
        platform,
        onEvent: options.onEvent,
        redact: options.redact,
        stepContainers,
      });
      const failed = failedContext();
      if (failed) throw failed;
      return { ...outcome, contextBytes };
    } catch (error) {
      response.destroy();
      const failed = failedContext();
      if (failed) throw failed;
      // Cancelled: the daemon is there, sees the request go and removes the container itself.
      if (options.signal?.aborted) throw new CancelledError(`Build of ${uri} (${platform}) cancelled`, { cause: error });
      // The build ended between a step container's start and its removal: the daemon went away
      // before its forcerm, and the container outlives it unless Kiln removes it.
      const open = stepContainers.current;
      if (open) await recordLostStepContainer(daemon, options.orphans ?? new OrphanLedger(), open, { image: uri });
      // The daemon asked for a secret the session did not have (a Dockerfile's own secret mount) and
      // the build failed on it (BuildKit skips a missing secret whose mount is not `required`).
      // Judged on the daemon's reason only (not the step's log, which the step itself wrote), with the
      // id matched whole: BuildKit says "secret <id> not found" / "secret <id>: not found".
      const reason = String((error as { details?: { reason?: unknown } })?.details?.reason ?? (error as Error)?.message ?? "");
      const missing = (session ? [...session.missing()] : []).filter((id) =>
        new RegExp(`\\bsecret ${id.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:? not found`).test(reason),
      );
      if (missing.length > 0) {
        throw new MissingSecretError(`The build of ${uri} (${platform}) needs build secret${missing.length > 1 ? "s" : ""} ${missing.join(", ")}, not given`, {
          hint: `Declare it with withCommands(..., { secrets: [${JSON.stringify(missing[0])}] }) and pass { secrets: { ${missing[0]}: value } } to build() or \`--secret id=${missing[0]},env=VAR\` to kiln build.`,
          details: { missing },
          cause: error,
        });
      }
      // The base or uv image could not be pulled: name it and say how to point Kiln elsewhere.
      const unpulled = explainImagePullFailure(error, options.image, uri);
      if (unpulled) throw unpulled;
      if (KilnError.isInstance(error)) throw error;
      throw requestFailure(daemon, error, options);
    }
  } finally {
    options.signal?.removeEventListener("abort", abortContext);
    if (!counted.destroyed) counted.destroy();
    if (!context.stream.destroyed) context.stream.destroy();
    await session?.close();
  }
}

/** Passes the context through unchanged (backpressure kept), counting what the daemon reads. */
async function* countBytes(source: Readable, add: (n: number) => void): AsyncGenerator<Buffer> {
  for await (const chunk of source) {
    const buffer = chunk as Buffer;
    add(buffer.length);
    yield buffer;
  }
}

/** A refused request (HTTP 4xx/5xx before any stream: a Dockerfile parse error, a bad platform) or a lost daemon. */
function requestFailure(daemon: DockerDaemon, error: unknown, options: BuildOneOptions): unknown {
  const translated = daemon.translate(error, options.signal);
  if (KilnError.isInstance(translated)) return translated;
  const status = (error as { statusCode?: number }).statusCode;
  const json = (error as { json?: { message?: string } }).json;
  const reason = options.redact(String(json?.message ?? (error as Error)?.message ?? error).trim());
  return new BuildFailedError(`The Docker daemon refused the build of ${options.uri ?? options.image.uri} (${options.platform}): ${reason}`, {
    hint: "Check the rendered Dockerfile (`kiln dockerfile <spec>`) and that the daemon supports this platform.",
    cause: error,
    details: { status, platform: options.platform, reason },
  });
}
