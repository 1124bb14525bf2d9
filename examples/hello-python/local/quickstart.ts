// `pnpm run offline` (what scripts/quickstart.sh runs): start the local stand-ins, run `pnpm start`
// against them, then run the image it produced. Everything it starts is stopped at the end.
import { spawn } from "node:child_process";
import { startOfflineServices } from "./services.js";

function run(command: string, args: string[], env: NodeJS.ProcessEnv, capture = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ["ignore", capture ? "pipe" : "inherit", "inherit"] });
    let out = "";
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
      process.stdout.write(d);
    });
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`${command} ${args.join(" ")} exited ${code}`))));
  });
}

console.error("hello-python: making the local base image, registry and package index (the base image takes a few minutes the first time)");
const services = await startOfflineServices();
try {
  const env = { ...process.env, ...services.env };
  const uri = (await run("pnpm", ["start"], env, true)).trim().split("\n").pop()!;
  console.error(`hello-python: built and pushed ${uri}; running it:`);
  await run("docker", ["run", "--rm", uri, "python3", "/app/hello.py"], env);
} finally {
  await services.stop();
}
