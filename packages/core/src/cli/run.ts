/**
 * Runs one command with the shared plumbing: an AbortSignal fired by SIGINT (a second SIGINT exits
 * at once), typed errors printed with their hint (credentials redacted), and exit codes:
 * 0 success, 1 the operation failed, 2 bad usage / could not determine, 130 interrupted.
 */
import { CancelledError, KilnError } from "../errors.js";
import { redactSecrets, serializeError } from "../redact.js";
import type { CommandName } from "./help.js";

export interface CommandContext {
  signal: AbortSignal;
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  /** Whether stderr is a terminal (live progress). */
  interactive: boolean;
  /** True when the user passed --json (errors are then also printed as a JSON line). */
  json: boolean;
}

export type CommandModule = { run(args: string[], context: CommandContext): Promise<number> };

const USAGE_CODES = new Set([
  "KILN_USAGE",
  "KILN_VALIDATION",
  "KILN_INVALID_REFERENCE",
  "KILN_SPEC_LOAD",
  "KILN_CONFIG",
  "KILN_UNKNOWN_BUILDER",
  "KILN_UNKNOWN_CHECKER",
  "KILN_PLUGIN_LOAD",
  "KILN_CHECK_FAILED",
  "KILN_SOURCE_NOT_FOUND",
  "KILN_MISSING_SECRET",
  "KILN_SECRETS_NEED_BUILDKIT",
]);

export function exitCodeFor(error: unknown, signal: AbortSignal): number {
  if (signal.aborted || CancelledError.isInstance(error)) return 130;
  if (KilnError.isInstance(error) && USAGE_CODES.has(error.code)) return 2;
  return 1;
}

const loaders: Record<CommandName, () => Promise<CommandModule>> = {
  build: () => import("./commands/build.js"),
  plan: () => import("./commands/plan.js"),
  explain: () => import("./commands/explain.js"),
  dockerfile: () => import("./commands/dockerfile.js"),
  check: () => import("./commands/check.js"),
  plugins: () => import("./commands/plugins.js"),
  promote: () => import("./commands/promote.js"),
};

export async function runCommand(command: CommandName, args: string[]): Promise<number> {
  const controller = new AbortController();
  let interrupts = 0;
  // SIGINT and SIGTERM both cancel (exit 130); a second one quits at once.
  const onSignal = (signal: NodeJS.Signals) => {
    interrupts++;
    if (interrupts > 1) process.exit(130); // the user insists; locks are removed by the exit hook
    const again = signal === "SIGINT" ? "Ctrl-C again" : `${signal} again`;
    process.stderr.write(`\nkiln: ${signal === "SIGINT" ? "interrupted" : `stopped by ${signal}`}, cleaning up… (${again} to quit at once)\n`);
    controller.abort(new CancelledError(`Interrupted (${signal})`));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const context: CommandContext = {
    signal: controller.signal,
    stdout: process.stdout,
    stderr: process.stderr,
    interactive: Boolean(process.stderr.isTTY) && !process.env.CI && process.env.TERM !== "dumb",
    json: args.includes("--json"),
  };
  try {
    const module = await loaders[command]();
    const code = await module.run(args, context);
    return controller.signal.aborted ? 130 : code;
  } catch (error) {
    const code = exitCodeFor(error, controller.signal);
    printError(error, context, code);
    return code;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    // Interrupted: work that cannot be aborted (a plugin checker's request to a stalled registry)
    // must not keep the process alive for minutes. Exit shortly unless the event loop drains first.
    if (controller.signal.aborted) setTimeout(() => process.exit(130), 250).unref();
  }
}

export function printError(error: unknown, context: CommandContext, code: number): void {
  const serialized = serializeError(code === 130 && !CancelledError.isInstance(error) ? new CancelledError("Interrupted") : error);
  if (context.json) context.stderr.write(`${JSON.stringify({ type: "error", time: Date.now(), error: serialized })}\n`);
  context.stderr.write(`kiln: ${serialized.message}\n`);
  if (serialized.hint) context.stderr.write(`hint: ${serialized.hint}\n`);
  if (process.env.KILN_DEBUG && error instanceof Error && error.stack) context.stderr.write(`${redactSecrets(error.stack)}\n`);
  // The cause's stack too: for a spec that failed to load, it is where in the spec it failed.
  const cause = error instanceof Error ? error.cause : undefined;
  if (process.env.KILN_DEBUG && cause instanceof Error && cause.stack) context.stderr.write(`caused by: ${redactSecrets(cause.stack)}\n`);
}
