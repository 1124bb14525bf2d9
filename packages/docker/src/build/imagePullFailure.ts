/**
 * A build that failed because the daemon could not pull an image the Dockerfile starts from — the base
 * or the uv image — says which image and how to point Kiln at one it can reach. Offline or behind a
 * mirror this is the first failure a user meets: the default bases come from Docker Hub
 * (`python:<X.Y>-slim-bookworm`, `node:<N>-bookworm-slim`) and uv from ghcr.io.
 *
 * The failed step tells: BuildKit resolves every image first, in a step named
 * `[internal] load metadata for <ref>`; the classic builder pulls at `FROM <ref>` or
 * `COPY --from=<ref> …`. Local stage images (`kiln-stage/…`, incremental builds) are never pulled, so
 * only the image's own base and uv image are explained; other references get the image named. A base
 * or uv image pinned to a digest (pinBase) is recognised by either form.
 */
import { BuildFailedError, baseReference, parseReference, uvImageReference, type Image } from "@kiln/core";

/** Docker's normalised form (`python:3.11` → `docker.io/library/python:3.11`), to compare with BuildKit's. */
function normalized(ref: string): string {
  try {
    const parsed = parseReference(ref);
    return `${parsed.registry}/${parsed.repository}${parsed.digest ? `@${parsed.digest}` : `:${parsed.tag ?? "latest"}`}`;
  } catch {
    return ref;
  }
}

/** The image a failed step was pulling, if the step is one that pulls. */
export function pulledImageOfStep(step: string, reason: string): string | undefined {
  const metadata = /^\[internal\] load metadata for (\S+)$/.exec(step);
  if (metadata) return metadata[1];
  const from = /^FROM (?:--platform=\S+ )?(\S+)(?: AS \S+)?$/i.exec(step);
  if (from) return from[1];
  // A COPY --from that fails on a file (not on the pull) says "COPY failed: …".
  const copyFrom = /^COPY (?:--\S+ )*--from=(\S+) /i.exec(step);
  if (copyFrom && !/^COPY failed/i.test(reason)) return copyFrom[1];
  return undefined;
}

function registryOf(ref: string): string | undefined {
  try {
    return parseReference(ref).registry;
  } catch {
    return undefined;
  }
}

/** Whether the rendered Dockerfile copies uv from the uv image (as core's dockerfile.ts decides). */
function needsUvImage(image: Image): boolean {
  const { installer, layers } = image.spec;
  return layers.some((layer) => layer.kind === "uvProject" || (installer === "uv" && (layer.kind === "pipPackages" || layer.kind === "requirements")));
}

const UV_OPTIONS = `\`installer: "pip"\` (fromDebianBase({ installer: "pip" }) or clone({ installer: "pip" })) installs with pip and needs no uv image; or set \`uvImage\` to a copy the daemon can reach (withUvProject always needs uv)`;

function baseHint(image: Image, ref: string): string {
  const base = image.spec.base;
  const where = registryOf(ref) === "docker.io" ? " from Docker Hub" : "";
  const fix =
    base.kind === "image" && base.python !== undefined
      ? `set \`baseImage\` to one the daemon has or can reach, e.g. Image.fromDebianBase({ baseImage: "registry.example/python:3.11-slim-bookworm" })`
      : base.kind === "image" && base.node !== undefined
        ? `set \`baseImage\` to one the daemon has or can reach, e.g. Image.fromNodeBase({ baseImage: "registry.example/node:20-bookworm-slim" })`
        : "give Image.fromBase a reference the daemon has or can reach (fromDebianBase and fromNodeBase take it as `baseImage`)";
  const uv = needsUvImage(image) ? ` This image also copies uv from ${image.spec.uvImage} (ghcr.io by default): ${UV_OPTIONS}.` : "";
  return `The daemon could not pull the base image ${ref}${where}: ${fix}, or \`docker pull\`/\`docker tag\` it under this name; \`docker login\` first for a private registry.${uv}`;
}

function uvHint(ref: string): string {
  return `uv is copied from ${ref} (ghcr.io by default), which the daemon could not pull: ${UV_OPTIONS}. The base image is the \`baseImage\` option.`;
}

/**
 * A clearer BuildFailedError for a build that failed pulling an image, or undefined when `error` is
 * something else. Keeps the daemon's reason and the original error as the cause.
 */
export function explainImagePullFailure(error: unknown, image: Image, uri: string): BuildFailedError | undefined {
  if (!BuildFailedError.isInstance(error)) return undefined;
  const details = (error.details ?? {}) as { step?: unknown; reason?: unknown; platform?: unknown; logTail?: unknown };
  if (typeof details.step !== "string") return undefined;
  const reason = typeof details.reason === "string" ? details.reason : error.message;
  const pulled = pulledImageOfStep(details.step, reason);
  if (pulled === undefined) return undefined;
  const spec = image.spec;
  const wanted = normalized(pulled);
  // A pinned base or uv image is pulled as `ref@sha256:…` (pinBase), so compare that form too.
  const isBase = spec.base.kind === "image" && (normalized(spec.base.ref) === wanted || normalized(baseReference(spec.base)) === wanted);
  const isUv = normalized(spec.uvImage) === wanted || normalized(uvImageReference(spec)) === wanted;
  const platform = typeof details.platform === "string" ? ` (${details.platform})` : "";
  const what = isBase ? "the base image" : isUv ? "the uv image" : "the image";
  const shown = isBase && spec.base.kind === "image" ? spec.base.ref : isUv ? spec.uvImage : pulled;
  const hint = isBase
    ? baseHint(image, shown)
    : isUv
      ? uvHint(shown)
      : `The image ${shown} could not be pulled: check its name, that the daemon can reach its registry, and \`docker login\` for a private one.`;
  return new BuildFailedError(`Build of ${uri}${platform} failed: ${what} ${shown} could not be pulled: ${reason}`, {
    hint,
    cause: error,
    details: { ...details, pullFailed: shown },
  });
}
