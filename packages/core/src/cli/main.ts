#!/usr/bin/env node
/**
 * The `kiln` command. Start-up is kept lean: this file only parses the command name; each command
 * lives in its own module, imported on demand (so `kiln --help` loads no engine, registry client,
 * tar or TypeScript-loader code).
 */
import { readFileSync } from "node:fs";
import { COMMANDS, COMMAND_HELP, MAIN_HELP, type CommandName } from "./help.js";

async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === "-h" || first === "--help" || first === "help") {
    const topic = first === "help" ? rest[0] : undefined;
    process.stdout.write(topic && (COMMANDS as readonly string[]).includes(topic) ? COMMAND_HELP[topic as CommandName] : MAIN_HELP);
    return first === undefined ? 2 : 0;
  }
  if (first === "-v" || first === "--version") {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
    process.stdout.write(`${pkg.version}\n`);
    return 0;
  }
  if (!(COMMANDS as readonly string[]).includes(first)) {
    process.stderr.write(`kiln: unknown command ${JSON.stringify(first)}\nRun \`kiln --help\` for the commands.\n`);
    return 2;
  }
  const command = first as CommandName;
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(COMMAND_HELP[command]);
    return 0;
  }
  const { runCommand } = await import("./run.js");
  return runCommand(command, rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`kiln: internal error: ${(error as Error)?.stack ?? String(error)}\n`);
    process.exitCode = 1;
  },
);
