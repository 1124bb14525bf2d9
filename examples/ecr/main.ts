// `pnpm start`: a dry run — checks ECR (through the AWS API, no `docker login`) and prints the URI
// it would build and push, building nothing. `pnpm build-and-push`: the same without --dry-run.
//
// The builder is @kiln/docker with the ECR checker in front of its own checkers. Push credentials
// come from @kiln/ecr's credential provider (GetAuthorizationToken with your AWS credentials); the
// engine registers it automatically because @kiln/ecr is a dependency of this project, and
// registering it here as well makes that explicit for programs that bypass discovery.
import { init, build } from "@kiln/core";
import { DockerImageBuilder } from "@kiln/docker";
import { EcrImageChecker, registerEcrCredentials, withEcrChecker } from "@kiln/ecr";
import { image } from "./spec.js";

const dryRun = process.argv.includes("--dry-run");

registerEcrCredentials({ ...(process.env.AWS_PROFILE ? { profile: process.env.AWS_PROFILE } : {}) });
const checker = new EcrImageChecker({
  ...(process.env.AWS_PROFILE ? { profile: process.env.AWS_PROFILE } : {}),
  onWarning: (warning) => console.error(`warning: ${warning.message}\n  hint: ${warning.hint}`),
});
init({ imageBuilder: withEcrChecker(new DockerImageBuilder(), checker) });

const result = await build(image, {
  dryRun,
  onEvent: (event) => {
    if (event.type === "check.result") {
      const why = event.error ? ` (${event.error.message}${event.error.hint ? `; ${event.error.hint}` : ""})` : "";
      console.error(`check ${event.checker}: ${event.result}${why}`);
    } else if (event.type === "build.step") console.error(`step ${event.step}`);
    else if (event.type === "push.done") console.error(`pushed ${event.digest ?? ""}`);
  },
});
checker.destroy();
console.error(dryRun ? `dry run: ${result.outcome === "found" ? "already in ECR" : "would build and push"}` : result.outcome);
console.log(result.uri);
