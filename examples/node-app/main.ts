// `pnpm start`: compile the service (package.json "start" runs tsc first), then build its image
// unless the registry has it, and print the URI.
import { build } from "@kiln/core";
import { image } from "./image.js";

const result = await build(image, {
  dryRun: process.env.KILN_DRY_RUN === "1",
  onEvent: (event) => {
    if (event.type === "check.result") console.error(`check ${event.checker}: ${event.result}`);
    else if (event.type === "build.step") console.error(`step ${event.step}`);
  },
});
console.error(result.outcome);
console.log(result.uri);
