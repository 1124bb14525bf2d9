// `pnpm start`: build the Dockerfile image unless the registry has it; print its URI.
// KILN_DRY_RUN=1 checks only and prints the URI that would be built (nothing is built or pushed).
import { build } from "@kiln/core";
import { image } from "./image.js";

const dryRun = process.env.KILN_DRY_RUN === "1";
const result = await build(image, {
  dryRun,
  onEvent: (event) => {
    if (event.type === "check.result") console.error(`check ${event.checker}: ${event.result}`);
    else if (event.type === "build.step") console.error(`step ${event.step}`);
  },
});
console.error(result.outcome);
console.log(result.uri);
