/**
 * An explain record kept next to the image in its registry: an OCI 1.1 artifact — an image manifest
 * with `artifactType: application/vnd.kiln.explain.v1+json`, the empty config, one layer holding the
 * record's JSON and `subject` naming the image — put under the tag `sha256-<image digest hex>.kiln`
 * (cosign's `.sig` scheme), so any registry that stores OCI image manifests serves it, and one with the
 * OCI referrers API also lists it among the image's referrers.
 *
 * What registries accept (checked here against Debian's docker-registry 2.8 / distribution 2.8): the
 * artifact manifest above is stored as sent (201, `subject` and `artifactType` kept), but 2.8 has no
 * referrers API (`GET /v2/<name>/referrers/<digest>` is 404, no `OCI-Subject` header), so the tag is
 * how it is found; the withdrawn `application/vnd.oci.artifact.manifest.v1+json` is refused (400
 * MANIFEST_INVALID), so it is not used. An annotation on the image's own manifest would change the
 * image digest and needs every builder's cooperation: not used either.
 */
import { Readable } from "node:stream";
import type { ExplainRecord } from "./explainRecord.js";
import { parseReference } from "./reference.js";
import { uploadBlob } from "./registry/blobs.js";
import { defaultRegistryClient } from "./registry/check.js";
import { sha256, type RegistryClient, type RegistryReference } from "./registry/client.js";
import type { RegistryRequestOptions } from "./registry/abort.js";
import { OCI_MANIFEST } from "./registry/mediaTypes.js";

export const EXPLAIN_ARTIFACT_TYPE = "application/vnd.kiln.explain.v1+json";
const EMPTY_CONFIG_TYPE = "application/vnd.oci.empty.v1+json";
const EMPTY_CONFIG = Buffer.from("{}");

/** The tag the record of the image `digest` lives under: `sha256-<hex>.kiln`. */
export function explainArtifactTag(digest: string): string {
  return `${digest.replace(":", "-")}.kiln`;
}

function repositoryOf(uri: string): RegistryReference {
  const ref = parseReference(uri);
  return { registry: ref.registry, repository: ref.repository };
}

function blob(data: Buffer) {
  return { digest: sha256(data), size: data.length, open: () => Readable.from([data]) };
}

/** Puts the record next to the image `uri` (whose manifest is `digest`); returns the artifact's tag. */
export async function attachExplainRecord(
  uri: string,
  digest: string,
  record: ExplainRecord,
  options: RegistryRequestOptions & { client?: RegistryClient } = {},
): Promise<string> {
  const client = options.client ?? defaultRegistryClient();
  const repo = repositoryOf(uri);
  const request = { signal: options.signal, onEvent: options.onEvent };
  const head = await client.headManifest({ ...repo, digest }, request);
  // A HEAD without Content-Length: the size comes from the manifest itself (a descriptor of size 0 is invalid).
  const subject = head?.size === undefined ? await client.getManifest({ ...repo, digest }, request) : head;
  if (subject === null || subject.size === undefined) throw new Error(`the image manifest ${digest} is not in ${repo.registry}/${repo.repository}`);
  const content = Buffer.from(JSON.stringify(record));
  await uploadBlob(client, repo, blob(EMPTY_CONFIG), request);
  await uploadBlob(client, repo, blob(content), request);
  const manifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: EXPLAIN_ARTIFACT_TYPE,
    config: { mediaType: EMPTY_CONFIG_TYPE, digest: sha256(EMPTY_CONFIG), size: EMPTY_CONFIG.length },
    layers: [{ mediaType: EXPLAIN_ARTIFACT_TYPE, digest: sha256(content), size: content.length }],
    subject: { mediaType: subject.mediaType ?? OCI_MANIFEST, digest, size: subject.size },
    annotations: { "org.opencontainers.image.created": record.at },
  };
  const tag = explainArtifactTag(digest);
  await client.putManifest({ ...repo, tag }, Buffer.from(JSON.stringify(manifest)), OCI_MANIFEST, request);
  return tag;
}

/**
 * The record attached to the image `uri` (a tag or digest reference), or null when the image or its
 * record is not there. Throws (a typed registry error) when the registry cannot tell.
 */
export async function readAttachedExplainRecord(
  uri: string,
  options: RegistryRequestOptions & { client?: RegistryClient } = {},
): Promise<ExplainRecord | null> {
  const client = options.client ?? defaultRegistryClient();
  const repo = repositoryOf(uri);
  const request = { signal: options.signal, onEvent: options.onEvent };
  const image = await client.headManifest(uri, request);
  if (image === null) return null;
  const artifact = await client.getManifest({ ...repo, tag: explainArtifactTag(image.digest) }, request);
  if (artifact === null) return null;
  const layer = (artifact.manifest.layers as Array<{ mediaType?: string; digest?: string }> | undefined)?.find((l) => l.mediaType === EXPLAIN_ARTIFACT_TYPE);
  if (artifact.manifest.artifactType !== EXPLAIN_ARTIFACT_TYPE || layer?.digest === undefined) return null;
  const content = await client.getBlob(repo, layer.digest, request);
  if (content === null) return null;
  const record = JSON.parse(content.toString("utf8")) as ExplainRecord;
  return record?.v === 1 && Array.isArray(record.inputs) ? record : null;
}
