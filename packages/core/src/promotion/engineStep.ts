/**
 * The engine's promotion step, between "the target does not have it" and "build it":
 *
 *   check target → (absent) ask each promoteFrom source in order → the first that holds the image for
 *   every requested platform is copied to the target (under the build lock) → else build.
 *
 * Failure policy: a source that could not be asked (unreachable, refused credentials) is skipped with
 * a `warning` event, and a promotion that fails (transfer, digest mismatch) falls back to building with
 * a `warning` — unless strict mode is on: then either is a PromotionFailedError and nothing is built
 * (strict never builds an image that may already exist somewhere it was told to look).
 * Cancellation and a lost build lease are never turned into a fallback.
 */
import { CancelledError, LeaseLostError, PromotionFailedError, PromotionSourceMissingError } from "../errors.js";
import { emit, type EventListener } from "../events.js";
import type { Image } from "../image.js";
import { isOciLayoutTarget } from "../reference.js";
import { serializeError } from "../redact.js";
import { hasContentTag } from "../snapshot.js";
import { checkImage, defaultRegistryClient } from "../registry/check.js";
import { toReference, type RegistryClient } from "../registry/client.js";
import { promoteImage, type PromotedImage } from "./copy.js";
import { promotionReference } from "./sources.js";

export interface PromotionCandidate {
  /** The source reference that holds the image (`<source>/<name>:<tag>`). */
  source: string;
  /** Its manifest (or index) digest. */
  digest: string;
}

export interface PromotionStepOptions {
  image: Image;
  sources: readonly string[];
  strict: boolean;
  signal: AbortSignal;
  onEvent: EventListener;
  client?: RegistryClient;
}

export class PromotionStep {
  private readonly client: RegistryClient;

  constructor(private readonly options: PromotionStepOptions) {
    this.client = options.client ?? defaultRegistryClient();
  }

  /**
   * Whether promotion applies at all: sources configured, a registry target (not an `oci:` layout) and
   * the image's content tag — an explicit tag (`main`, `v1`) can move, so the copy may be another image.
   */
  get enabled(): boolean {
    const { image, sources } = this.options;
    return sources.length > 0 && hasContentTag(image) && !isOciLayoutTarget(image.uri);
  }

  /** The first source holding the image for every requested platform, or undefined. */
  async findCandidate(): Promise<PromotionCandidate | undefined> {
    if (!this.enabled) return undefined;
    const { image, sources, strict, signal, onEvent } = this.options;
    const target = toReference(image.uri);
    for (const registry of sources) {
      const source = promotionReference(registry, image.name, image.tag);
      const ref = toReference(source);
      if (ref.registry === target.registry && ref.repository === target.repository) continue; // the target itself
      try {
        const answer = await checkImage(source, { platforms: image.platform, client: this.client, signal, onEvent });
        if (answer.present && answer.digest) return { source: answer.uri, digest: answer.digest };
      } catch (error) {
        if (signal.aborted) throw new CancelledError(`Build of ${image.uri} cancelled`, { cause: error });
        const problem = serializeError(error);
        if (strict) {
          throw new PromotionFailedError(`Could not ask promotion source ${source} for ${image.uri}: ${problem.message}`, {
            hint: `${problem.hint ? `${problem.hint} ` : ""}Strict mode does not build an image a promotion source may hold; fix access to ${registry} or remove it from promoteFrom.`,
            cause: error,
            details: { image: image.uri, source, reason: "source-unreachable" },
          });
        }
        emit(onEvent, {
          type: "warning",
          image: image.uri,
          message: `promotion source ${source} could not be asked (${problem.message}); trying the next one`,
        });
      }
    }
    return undefined;
  }

  /**
   * Promotes from the first source that holds the image. Undefined when none does, or (not strict)
   * when the copy failed — the caller then builds. `beforeTag` confirms the build lease.
   */
  async run(beforeTag?: () => Promise<void>): Promise<(PromotedImage & { uri: string }) | undefined> {
    const candidate = await this.findCandidate();
    if (!candidate) return undefined;
    const { image, strict, signal, onEvent } = this.options;
    const started = Date.now();
    const platforms = [...image.platform];
    const mode = toReference(candidate.source).registry === toReference(image.uri).registry ? "mount" : "stream";
    emit(onEvent, { type: "promote.start", image: image.uri, source: candidate.source, target: image.uri, platforms, mode });
    try {
      // By digest: a source tag moved since the check cannot mix two images.
      const source = { ...toReference(candidate.source), tag: undefined, digest: candidate.digest };
      const promoted = await promoteImage(this.client, source, image.uri, {
        platforms,
        signal,
        onEvent,
        image: image.uri,
        ...(beforeTag ? { beforeTag } : {}),
      });
      emit(onEvent, {
        type: "promote.done",
        image: image.uri,
        source: candidate.source,
        target: image.uri,
        digest: promoted.digest,
        durationMs: Date.now() - started,
        mounted: promoted.blobs.mounted,
        copied: promoted.blobs.copied,
        existing: promoted.blobs.existing,
        bytesCopied: promoted.bytesCopied,
      });
      return { ...promoted, source: candidate.source, uri: image.uri };
    } catch (error) {
      if (signal.aborted || CancelledError.isInstance(error) || LeaseLostError.isInstance(error)) throw error;
      if (strict) throw error;
      const problem = serializeError(error);
      const what = PromotionSourceMissingError.isInstance(error) ? "changed while promoting" : "could not be promoted";
      emit(onEvent, { type: "warning", image: image.uri, message: `${candidate.source} ${what} (${problem.message}); building instead` });
      return undefined;
    }
  }
}
