/**
 * Puts the ECR checker in front of another builder's checkers (e.g. @kiln/docker's local-daemon and
 * registry checkers), so `init({ imageBuilder: withEcrChecker(new DockerImageBuilder()) })` checks
 * ECR through the AWS API first and builds/pushes with the wrapped builder.
 */
import type { Architecture, BuildImageOptions, Image, ImageBuild, ImageBuilder, ImageCheckerLike } from "@kiln/core";
import { EcrImageChecker, type EcrImageCheckerOptions } from "./checker.js";

export function withEcrChecker(builder: ImageBuilder, checker: EcrImageChecker | EcrImageCheckerOptions = {}): ImageBuilder & { name?: string } {
  const ecr = checker instanceof EcrImageChecker ? checker : new EcrImageChecker(checker);
  // Images outside ECR are not this checker's business: it passes them on (null) instead of
  // reporting an error for every non-ECR image the builder handles.
  const ecrOnly = {
    name: ecr.name,
    imageExists(repository: string, tag: string, arch?: readonly Architecture[]): Promise<string | null> {
      return ecr.handles(repository) ? ecr.imageExists(repository, tag, arch) : Promise.resolve(null);
    },
  };
  const name = (builder as { name?: unknown }).name;
  return {
    ...(typeof name === "string" ? { name } : {}),
    buildImage: (image: Image, options: BuildImageOptions): Promise<ImageBuild> => builder.buildImage(image, options),
    getCheckers: (): ImageCheckerLike[] => [ecrOnly, ...(builder.getCheckers?.() ?? [])],
  };
}
