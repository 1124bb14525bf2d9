/**
 * One Solve of a Kiln image with the dockerfile.v0 frontend: a session serving the two local sources
 * (`context`, `dockerfile`), the build secrets and registry credentials; the Status stream turned into
 * Kiln's `build.step` / `build.log` events and, on failure, a BuildFailedError naming the failing
 * step with its log tail — by @kiln/docker's `followBuild`, which reads the very same
 * StatusResponse messages the Engine's `/build` stream carries (`moby.buildkit.trace`).
 */
import { randomBytes } from "node:crypto";
import { basename } from "node:path";
import { BuildFailedError, CancelledError, KilnError, MissingSecretError, type Architecture, type EventListener, type Image } from "@kiln/core";
import { dockerBuildTarget, emit, type CredentialSource } from "@kiln/core/plugin";
import { checkedSecrets, followBuild, secretSessionHandlers, type BuildOutcome } from "@kiln/docker/internal";
import { failedImportReporter, withoutCacheImportErrors } from "./cacheImportStatus.js";
import type { BuildKitClient } from "./client.js";
import type { CacheEntry } from "./controlMessages.js";
import { diffCopyHandler, DIFF_COPY_METHOD, type SourceTree } from "@kiln/docker/internal";
import { GrpcCallError, GrpcCode } from "./grpcClient.js";
import { openEngineSession } from "./engineSession.js";
import { openSession } from "./session.js";
import { AUTH_CREDENTIALS_METHOD, authCredentialsHandler } from "./sessionAuth.js";
import { buildSources, CONTEXT_SOURCE, DOCKERFILE_NAME, DOCKERFILE_SOURCE } from "./sources.js";
import { unreachable } from "./transport.js";

export interface SolveImageOptions {
  image: Image;
  uri: string;
  platforms: Architecture[];
  exporter: { type: string; attrs: Record<string, string> };
  labels: Record<string, string>;
  secrets: ReadonlyMap<string, string>;
  credentials?: CredentialSource;
  env?: NodeJS.ProcessEnv;
  noCache?: boolean;
  pull?: boolean;
  /** `host` or `none` (BuildKit's `force-network-mode`; `host` needs the daemon's network.host entitlement). */
  networkMode?: string;
  cacheImports?: CacheEntry[];
  cacheExports?: CacheEntry[];
  /** A split group's imported refs → the refs they were derived from (cache.ts `groupCache`): a pair warns only when both fail. */
  cacheImportFallbacks?: ReadonlyMap<string, string>;
  signal?: AbortSignal;
  onEvent?: EventListener;
  redact: (text: string) => string;
  /** Told each registry secret handed to the daemon (for scrubbing). */
  onSecret?: (secret: string) => void;
}

export interface SolvedImage extends BuildOutcome {
  exporterResponse: Record<string, string>;
  /** Bytes of file content the daemon requested from the sources. */
  sentBytes: number;
}

export async function solveImage(client: BuildKitClient, options: SolveImageOptions): Promise<SolvedImage> {
  const { image, uri, platforms, signal } = options;
  const sources = buildSources(image, uri);
  const trees = new Map<string, SourceTree>([
    [CONTEXT_SOURCE, sources.context],
    [DOCKERFILE_SOURCE, sources.dockerfile],
  ]);
  let sentBytes = 0;
  const secretService = secretSessionHandlers(checkedSecrets(options.secrets));
  const unary = new Map(secretService.handlers);
  unary.set(AUTH_CREDENTIALS_METHOD, authCredentialsHandler({ credentials: options.credentials, env: options.env, onSecret: options.onSecret }));
  // A source that changed since it was hashed fails the transfer; that, not the daemon's message, is the build's error.
  let sourceFailure: unknown;
  const streams = new Map([
    [
      DIFF_COPY_METHOD,
      diffCopyHandler(
        trees,
        (p) => p.done && (sentBytes += p.bytes),
        (e) => (sourceFailure ??= e),
      ),
    ],
  ]);

  signal?.throwIfAborted();
  const sessionOptions = { id: randomBytes(16).toString("hex"), name: sessionName(image), sharedKey: sources.sharedKey, unary, streams, signal };
  // The engine takes sessions on its own /session, without the /grpc tunnel's extra framing (see engineSession.ts).
  const session =
    client.endpoint.kind === "docker-engine"
      ? await openEngineSession(client.endpoint, { ...sessionOptions, env: options.env }).catch((error: unknown) => {
          if (signal?.aborted) throw new CancelledError(`Build of ${uri} cancelled`, { cause: error });
          throw error;
        })
      : openSession(client.channel, sessionOptions);
  try {
    const base = image.spec.base;
    const frontendAttrs: Record<string, string> = {
      filename: DOCKERFILE_NAME,
      platform: platforms.join(","),
      ...Object.fromEntries(Object.entries(options.labels).map(([k, v]) => [`label:${k}`, v])),
      ...(base.kind === "dockerfile" ? Object.fromEntries([...base.buildArgs].map(([k, v]) => [`build-arg:${k}`, v])) : {}),
    };
    const target = dockerBuildTarget(image);
    if (target) frontendAttrs.target = target;
    if (options.noCache) frontendAttrs["no-cache"] = "";
    if (options.pull) frontendAttrs["image-resolve-mode"] = "pull";
    if (options.networkMode) frontendAttrs["force-network-mode"] = options.networkMode;
    // The frontend's own solves read the cache: imports go to it as JSON too (buildkit client/solve.go).
    if (options.cacheImports && options.cacheImports.length > 0) {
      frontendAttrs["cache-imports"] = JSON.stringify(options.cacheImports.map((e) => ({ Type: e.type, Attrs: e.attrs })));
    }
    const solve = client.solve(
      {
        exporter: options.exporter.type,
        exporterAttrs: options.exporter.attrs,
        session: session.id,
        frontend: "dockerfile.v0",
        frontendAttrs,
        cacheImports: options.cacheImports,
        cacheExports: options.cacheExports,
        entitlements: options.networkMode === "host" ? ["network.host"] : [],
      },
      signal,
    );
    let solveError: unknown;
    let response: Record<string, string> | undefined;
    const settled = solve.result.then(
      (r) => (response = r),
      (e: unknown) => {
        solveError = e;
        throw e;
      },
    );
    settled.catch(() => undefined); // read by traceLines once the status stream ends
    // A cache import that failed is a miss, not a failed build (cacheImportStatus.ts): said once per ref
    // (once per pair for a split group's ref and the ref it came from), as a warning.
    const onFailedImport = failedImportReporter(options.cacheImportFallbacks ?? new Map(), (refs, error) =>
      emit(options.onEvent, {
        type: "warning",
        image: uri,
        message: `BuildKit at ${client.endpoint.address} could not import the build cache ${refs.join(" or ")} (built without it): ${options.redact(error)}`,
      }),
    );
    const status = mapAsync(solve.status, (message) => withoutCacheImportErrors(message, onFailedImport));
    const outcome = await followBuild(traceLines(status, settled), {
      image: uri,
      ...(platforms.length === 1 ? { platform: platforms[0]! } : {}),
      onEvent: options.onEvent,
      redact: options.redact,
    }).catch((error: unknown) => {
      if (KilnError.isInstance(sourceFailure) && !signal?.aborted) throw sourceFailure;
      throw failure(error, solveError, { uri, platforms, signal, client, missing: secretService.missing() });
    });
    return { ...outcome, exporterResponse: response ?? {}, sentBytes };
  } finally {
    await session.close();
  }
}

async function* mapAsync<T, U>(source: AsyncIterable<T>, map: (item: T) => U): AsyncGenerator<U> {
  for await (const item of source) yield map(item);
}

/** The session's name at the daemon: the context folder's name, as buildx names it. */
function sessionName(image: Image): string {
  const base = image.spec.base;
  return base.kind === "dockerfile" ? basename(base.contextHostPath) : image.name;
}

/**
 * StatusResponse messages as the Engine's build stream lines `followBuild` reads, then the outcome:
 * the exporter's digest as the image id, or the Solve's error.
 */
async function* traceLines(status: AsyncIterable<Buffer>, result: Promise<Record<string, string>>): AsyncGenerator<Buffer> {
  for await (const message of status) yield Buffer.from(`${JSON.stringify({ id: "moby.buildkit.trace", aux: message.toString("base64") })}\n`);
  let line: unknown;
  try {
    const response = await result;
    line = { aux: { ID: response["containerimage.digest"] || response["containerimage.config.digest"] || "solved" } };
  } catch (error) {
    line = { errorDetail: { message: error instanceof GrpcCallError ? error.message : String((error as Error)?.message ?? error) } };
  }
  yield Buffer.from(`${JSON.stringify(line)}\n`);
}

interface FailureContext {
  uri: string;
  platforms: Architecture[];
  signal?: AbortSignal;
  client: BuildKitClient;
  missing: ReadonlySet<string>;
}

/** Maps a failed Solve to Kiln's errors: cancelled, daemon lost, missing secret, or the step's BuildFailedError. */
function failure(error: unknown, solveError: unknown, ctx: FailureContext): unknown {
  const where = `${ctx.uri} (${ctx.platforms.join(", ")})`;
  if (ctx.signal?.aborted) return new CancelledError(`Build of ${where} cancelled`, { cause: error });
  if (solveError instanceof GrpcCallError && solveError.status === GrpcCode.UNAVAILABLE) return unreachable(ctx.client.endpoint, solveError);
  const reason = String((error as { details?: { reason?: unknown } })?.details?.reason ?? (error as Error)?.message ?? "");
  const missing = [...ctx.missing].filter((id) => new RegExp(`\\bsecret ${id.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:? not found`).test(reason));
  if (missing.length > 0) {
    return new MissingSecretError(`The build of ${where} needs build secret${missing.length > 1 ? "s" : ""} ${missing.join(", ")}, not given`, {
      hint: `Declare it with withCommands(..., { secrets: [${JSON.stringify(missing[0])}] }) and pass { secrets: { ${missing[0]}: value } } to build() or \`--secret id=${missing[0]},env=VAR\` to kiln build.`,
      details: { missing },
      cause: error,
    });
  }
  if (KilnError.isInstance(error)) return error;
  return new BuildFailedError(`Build of ${where} on BuildKit at ${ctx.client.endpoint.address} failed: ${(error as Error)?.message ?? String(error)}`, {
    cause: error,
  });
}
