/**
 * Puts the ECR checker in front of another builder's checkers (e.g. @kiln/docker's local-daemon and
 * registry checkers), so `init({ imageBuilder: withEcrChecker(new DockerImageBuilder()) })` checks
 * ECR through the AWS API first and builds/pushes with the wrapped builder.
 */
import type { Architecture, BuildImageOptions, Image, ImageBuild, ImageBuilder, ImageCheckerLike, ImageCheckOptions } from "@kiln/core";
import { EcrImageChecker, type EcrImageCheckerOptions } from "./checker.js";

export function withEcrChecker(builder: ImageBuilder, checker: EcrImageChecker | EcrImageCheckerOptions = {}): ImageBuilder & { name?: string } {
  const ecr = checker instanceof EcrImageChecker ? checker : new EcrImageChecker(checker);
  // Only repositories with an ECR host (or alias) are this checker's business; the rest are passed
  // on (null). A bare name (`myapp`, `user/app`) in front of a builder is a local-only or Docker Hub
  // image: sending it to ECR's default account/region could report another image as "found".
  const ecrOnly = {
    name: ecr.name,
    // The engine's `{ signal }` goes on to the ECR requests, so a cancelled check closes them at once.
    imageExists(repository: string, tag: string, arch?: readonly Architecture[], options?: ImageCheckOptions): Promise<string | null> {
      return ecr.hasEcrHost(repository) ? ecr.imageExists(repository, tag, arch, options) : Promise.resolve(null);
    },
  };
  const name = (builder as { name?: unknown }).name;
  return {
    ...(typeof name === "string" ? { name } : {}),
    buildImage: (image: Image, options: BuildImageOptions): Promise<ImageBuild> => builder.buildImage(image, options),
    getCheckers: (): ImageCheckerLike[] => [ecrOnly, ...(builder.getCheckers?.() ?? [])],
  };
}
