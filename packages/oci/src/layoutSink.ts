/**
 * The OCI image layout sink (`registry: "oci:<dir>"`): blobs into `<dir>/<name>/blobs/sha256`, the
 * manifests as blobs, then the tag in `index.json`. Always OCI media types (a Docker base's layers
 * keep their bytes and digests, only their descriptors' type changes), as OCI layout readers expect.
 */
import { OCI_TYPES, type OutputTypes } from "./mediaTypes.js";
import type { OciLayoutWriter } from "./layoutWriter.js";
import type { BlobOutcome, BlobSource, ImageSink, ManifestBody } from "./sink.js";

const DOCKER_TO_OCI_LAYER: Record<string, string> = {
  "application/vnd.docker.image.rootfs.diff.tar.gzip": OCI_TYPES.layer,
  "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
};

export class LayoutSink implements ImageSink {
  private ready?: Promise<void>;

  constructor(
    private readonly writer: OciLayoutWriter,
    private readonly tag: string,
  ) {}

  outputTypes(): OutputTypes {
    return OCI_TYPES;
  }

  layerMediaType(mediaType: string): string {
    return DOCKER_TO_OCI_LAYER[mediaType] ?? mediaType;
  }

  canMountFrom(): boolean {
    return false;
  }

  async putBlob(source: BlobSource): Promise<BlobOutcome> {
    await (this.ready ??= this.writer.init());
    const added =
      source.file !== undefined
        ? await this.writer.putFile(source.digest, source.size, source.file)
        : await this.writer.putStream(source.digest, source.size, source.open);
    return added ? "pushed" : "existing";
  }

  async putManifests(children: ManifestBody[], tagged: ManifestBody, options: { beforeTag?: () => Promise<void> }): Promise<string> {
    await (this.ready ??= this.writer.init());
    for (const child of children) await this.writer.putBytes(child.body);
    const digest = await this.writer.putBytes(tagged.body);
    await options.beforeTag?.();
    await this.writer.tag(this.tag, { mediaType: tagged.mediaType, digest, size: tagged.body.length });
    return digest;
  }
}
