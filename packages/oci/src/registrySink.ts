/** The registry sink: core's registry writes (HEAD skip, mounts, chunked uploads, tag last). */
import { putImageManifests, uploadBlob, type RegistryClient, type RegistryReference } from "@kiln/core/plugin";
import { outputTypesFor, type OutputTypes } from "./mediaTypes.js";
import type { BlobOutcome, BlobSource, ImageSink, ManifestBody, PutBlobOptions } from "./sink.js";

export class RegistrySink implements ImageSink {
  constructor(
    private readonly client: RegistryClient,
    private readonly target: RegistryReference,
    private readonly chunkBytes?: number,
  ) {}

  outputTypes(baseManifestMediaType: string): OutputTypes {
    return outputTypesFor(baseManifestMediaType);
  }

  layerMediaType(mediaType: string): string {
    return mediaType;
  }

  canMountFrom(registry: string): boolean {
    return registry === this.target.registry;
  }

  async putBlob(source: BlobSource, options: PutBlobOptions): Promise<BlobOutcome> {
    const result = await uploadBlob(
      this.client,
      this.target,
      { digest: source.digest, size: source.size, open: source.open },
      {
        signal: options.signal,
        mountFrom: options.mountFrom,
        ...(this.chunkBytes ? { chunkBytes: this.chunkBytes } : {}),
        onProgress: options.onProgress,
      },
    );
    return result.via === "existing" ? "existing" : result.via === "mounted" ? "mounted" : "pushed";
  }

  putManifests(children: ManifestBody[], tagged: ManifestBody, options: { signal?: AbortSignal; beforeTag?: () => Promise<void> }): Promise<string> {
    return putImageManifests(this.client, this.target, children, tagged, options);
  }
}
