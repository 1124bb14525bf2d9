// One image for two platforms. The content tag covers the platforms, so this image never shares a
// tag with an amd64-only build of the same layers, and checkers must find BOTH platforms before
// the engine skips the build (an amd64-only image in the registry counts as absent).
//
// The layers only copy files — no RUN step — so arm64 builds need no emulation. The base image must
// exist for both platforms: busybox:1.36 from Docker Hub online; offline, KILN_MULTIARCH_BASE=scratch
// (the empty image, which exists for every platform without a pull).
import { Image } from "@kiln/core";

export const image = Image.fromBase(process.env.KILN_MULTIARCH_BASE || "busybox:1.36", {
  name: "multi-arch-example",
  platform: ["linux/amd64", "linux/arm64"],
})
  .withSourceFolder(new URL("./site", import.meta.url), "/site")
  .withLabels({ "org.opencontainers.image.description": "static files for linux/amd64 and linux/arm64" });

export default image;
