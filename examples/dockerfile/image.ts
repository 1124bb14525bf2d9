// An image from a Dockerfile and its context directory. The content tag covers the Dockerfile, every
// file of the context that .dockerignore keeps, the build args and the platforms — so editing
// app/NOTES.md (ignored) keeps the tag, and editing app/motd.txt changes it.
import { Image } from "@kiln/core";

export const image = Image.fromDockerfile(new URL("./app/Dockerfile", import.meta.url), {
  context: new URL("./app", import.meta.url),
  // Offline: KILN_BUSYBOX_BASE names a locally made busybox image.
  buildArgs: process.env.KILN_BUSYBOX_BASE ? { BASE: process.env.KILN_BUSYBOX_BASE } : {},
  name: "dockerfile-example",
});

export default image;
