/** The output follows the base's format: Docker schema 2 over a Docker base, OCI otherwise. */
export interface OutputTypes {
  manifest: string;
  config: string;
  layer: string;
  index: string;
}

export const OCI_TYPES: OutputTypes = {
  manifest: "application/vnd.oci.image.manifest.v1+json",
  config: "application/vnd.oci.image.config.v1+json",
  layer: "application/vnd.oci.image.layer.v1.tar+gzip",
  index: "application/vnd.oci.image.index.v1+json",
};

export const DOCKER_TYPES: OutputTypes = {
  manifest: "application/vnd.docker.distribution.manifest.v2+json",
  config: "application/vnd.docker.container.image.v1+json",
  layer: "application/vnd.docker.image.rootfs.diff.tar.gzip",
  index: "application/vnd.docker.distribution.manifest.list.v2+json",
};

export function outputTypesFor(baseManifestMediaType: string): OutputTypes {
  return baseManifestMediaType === DOCKER_TYPES.manifest ? DOCKER_TYPES : OCI_TYPES;
}
