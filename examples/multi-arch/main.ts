// `pnpm start`: build both platforms (one build each, then an OCI index joining them) unless the
// registry already has the image for both; print its URI. KILN_DRY_RUN=1 only checks.
import { build } from "@kiln/core";
import { image } from "./image.js";

const result = await build(image, {
  dryRun: process.env.KILN_DRY_RUN === "1",
  onEvent: (event) => {
    if (event.type === "check.result") console.error(`check ${event.checker}: ${event.result}`);
    else if (event.type === "build.step") console.error(`step ${event.platform ?? ""} ${event.step}`);
    else if (event.type === "push.done") console.error(`pushed ${event.platform ?? "index"} ${event.digest ?? ""}`);
  },
});
console.error(result.outcome);
console.log(result.uri);
