// `pnpm start`: build the image unless a registry already has it, and print its URI.
// The builder: the first installed one that can build it — @kiln/oci (no Docker Engine needed), else
// @kiln/docker (KILN_IMAGE_BUILDER=docker chooses it); the registry comes from KILN_IMAGE_REGISTRY
// (or kiln.config.json), so the same code pushes to localhost:5000 or to ghcr.io/acme.
import { build } from "@kiln/core";
import { image } from "./image.js";

const result = await build(image, {
  onEvent: (event) => {
    if (event.type === "check.result") console.error(`check ${event.checker}: ${event.result}`);
    else if (event.type === "build.step") console.error(`step ${event.step}`);
    else if (event.type === "push.done") console.error(`pushed ${event.digest ?? ""}`);
  },
});
console.error(`${result.outcome}${result.digest ? ` (${result.digest})` : ""}`);
console.log(result.uri);
