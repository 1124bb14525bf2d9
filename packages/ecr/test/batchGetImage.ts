/**
 * An aws-sdk-client-mock answer for BatchGetImage that behaves like ECR for both lookups the
 * checker makes: by tag (the tagged manifest or index) and by digest (an index's child manifests,
 * held unless listed as missing or failing).
 */
import type { BatchGetImageCommandInput, BatchGetImageCommandOutput } from "@aws-sdk/client-ecr";
import { OCI_MANIFEST } from "./manifests.js";

export interface TaggedImage {
  manifest: string;
  mediaType: string;
  registryId?: string;
}

export interface ChildAnswers {
  /** Child digests ECR no longer holds (answered with an `ImageNotFound` failure). */
  missing?: readonly string[];
  /** Child digest → another failure code (e.g. `KmsError`). */
  failing?: Readonly<Record<string, string>>;
}

export function batchGetImage(tagged: TaggedImage, children: ChildAnswers = {}) {
  return (input: BatchGetImageCommandInput): Partial<BatchGetImageCommandOutput> => {
    const registryId = tagged.registryId ?? input.registryId ?? "123456789012";
    const repositoryName = input.repositoryName;
    const images: NonNullable<BatchGetImageCommandOutput["images"]> = [];
    const failures: NonNullable<BatchGetImageCommandOutput["failures"]> = [];
    for (const imageId of input.imageIds ?? []) {
      const digest = imageId.imageDigest;
      if (digest === undefined) {
        images.push({ registryId, repositoryName, imageId, imageManifest: tagged.manifest, imageManifestMediaType: tagged.mediaType });
      } else if (children.missing?.includes(digest)) {
        failures.push({ imageId, failureCode: "ImageNotFound", failureReason: "Requested image not found" });
      } else if (children.failing?.[digest]) {
        failures.push({ imageId, failureCode: children.failing[digest] as never, failureReason: "injected failure" });
      } else {
        images.push({ registryId, repositoryName, imageId: { imageDigest: digest }, imageManifest: "{}", imageManifestMediaType: OCI_MANIFEST });
      }
    }
    return { images, failures };
  };
}
