/**
 * Where a built image goes: a registry (registrySink.ts) or an OCI image layout directory
 * (layoutSink.ts). The builder composes the same blobs and manifests for both; a sink stores blobs
 * (skipping the ones it holds), then the manifests, the tag last.
 */
import type { Readable } from "node:stream";
import type { OutputTypes } from "./mediaTypes.js";

export interface BlobSource {
  digest: string;
  size: number;
  open: () => Readable | Promise<Readable>;
  /** A file on this machine with exactly these bytes (own layers), when there is one. */
  file?: string;
}

export type BlobOutcome = "existing" | "mounted" | "pushed";

export interface ManifestBody {
  body: Buffer;
  mediaType: string;
}

export interface PutBlobOptions {
  /** Repositories of the same registry that may hold the blob (cross-repository mount). */
  mountFrom: string[];
  signal?: AbortSignal;
  onProgress?: (current: number) => void;
}

export interface ImageSink {
  /** The media types of what it writes, given the base's manifest type. */
  outputTypes(baseManifestMediaType: string): OutputTypes;
  /** A base layer's media type as it writes it. */
  layerMediaType(mediaType: string): string;
  /** Whether base layers can be mounted from `registry` (same registry). */
  canMountFrom(registry: string): boolean;
  putBlob(source: BlobSource, options: PutBlobOptions): Promise<BlobOutcome>;
  /** Children by digest, then `tagged` under the tag; returns the digest of `tagged`. */
  putManifests(children: ManifestBody[], tagged: ManifestBody, options: { signal?: AbortSignal; beforeTag?: () => Promise<void> }): Promise<string>;
}
