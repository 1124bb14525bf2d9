// A TypeScript service image from its lockfile: package.json + package-lock.json are copied and
// installed first (`npm ci`), then the compiled sources — so changing code never re-runs the install.
// `pnpm start` compiles service/src to service/dist before building.
import { Image } from "@kiln/core";

export const image = Image.fromNodeBase({
  nodeVersion: 20,
  // Offline: KILN_NODE_BASE names a locally made node image (see local/node-base.ts).
  ...(process.env.KILN_NODE_BASE ? { baseImage: process.env.KILN_NODE_BASE } : {}),
  name: "node-app",
})
  .withDockerignore(new URL("./service/.dockerignore", import.meta.url))
  .withNodeProject(new URL("./service", import.meta.url), { dest: "/app" })
  .withWorkdir("/app")
  .withEnvVars({ NODE_ENV: "production", PORT: "8080" });

export default image;
