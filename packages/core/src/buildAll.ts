/**
 * `buildAll(images, options)`: many images in one run (`kiln build spec.ts` with several exports).
 *
 * - The graph is respected: every image's Kiln bases (graph.ts) join the run as nodes of their own,
 *   one node per distinct image (uri + platforms), so a base shared by two images is built once, and
 *   an image starts only when its base is done.
 * - At most `concurrency` images are checked/built at a time (default DEFAULT_BUILD_CONCURRENCY); a
 *   node waiting for its base holds no slot, so the limit can never deadlock the graph.
 * - A failure does not stop the others: the images above a failed base fail with BaseImageFailedError
 *   (never started); everything else goes on. `failFast` stops at the first failure instead: the run's
 *   AbortSignal cancels the builds under way, and those not started are reported "cancelled".
 * - It never rejects for a failed image: one result per node comes back, the requested images first
 *   (in the order given), then the bases only pulled in by them, in the order they finished.
 */
import { BUILD_OPTION_KEYS, buildGraphNode, type EngineBuildOptions, type EngineImageBuild } from "./engine.js";
import { loadConfig } from "./config.js";
import { CancelledError, KilnError, ValidationError } from "./errors.js";
import { emit, type EventListener } from "./events.js";
import { Image } from "./image.js";
import { rejectUnknownKeys } from "./optionKeys.js";
import { SignalScope, Slots } from "./boundedConcurrency.js";
import { needsBasePin, pinBaseImage, selectPinBase } from "./pinBase.js";
import { resolveProjectDir } from "./selection.js";
import { optionsObject } from "./validate.js";

/** Images checked or built at once by `buildAll` and `kiln build` (each mostly waits on a daemon or a registry). */
export const DEFAULT_BUILD_CONCURRENCY = 4;

export interface BuildAllOptions extends Omit<EngineBuildOptions, "wait"> {
  /** Images checked/built at the same time (default DEFAULT_BUILD_CONCURRENCY). */
  concurrency?: number;
  /** Stop at the first failure: cancel the builds under way (through their AbortSignal) and start no other. */
  failFast?: boolean;
  /** Called as each image is done (built, found, failed, cancelled), e.g. to print progress. */
  onResult?: (result: BuildAllResult) => void;
}

/** build()'s options (but `wait`) and buildAll's own. */
const BUILD_ALL_OPTION_KEYS: readonly string[] = [...BUILD_OPTION_KEYS.filter((key) => key !== "wait"), "concurrency", "failFast", "onResult"];

/**
 * What happened to one image: the engine's outcome (`found`, `built`, `promoted`, `would-build`,
 * `would-promote`, `not-needed` — whatever BuildOutcome the engine reports), or `failed` /
 * `cancelled` (fail-fast or interrupted).
 */
export type BuildAllAction = EngineImageBuild["outcome"] | "failed" | "cancelled";

export interface BuildAllResult {
  /** The name the image was given (`{ name, image }`, the spec's export name), else its URI. */
  name: string;
  image: Image;
  action: BuildAllAction;
  /** The image's URI: as built/found, else the one it would have. */
  uri: string;
  digest?: string;
  /** From the moment it could start (its base done and a slot free) to its end. */
  durationMs: number;
  /** True for a base not asked for, built because an image asked for is built on it. */
  dependency: boolean;
  /** The engine's result, for every action but failed/cancelled. */
  result?: EngineImageBuild;
  /** For failed/cancelled. */
  error?: unknown;
}

export type BuildAllInput = Image | { name: string; image: Image };

/** An image above a base that failed: never started. */
export class BaseImageFailedError extends KilnError {
  override readonly code: string = "KILN_BASE_FAILED";
  static override isInstance(error: unknown): error is BaseImageFailedError {
    return KilnError.isInstance(error) && error.code === "KILN_BASE_FAILED";
  }
}

interface Node {
  key: string;
  name: string;
  image: Image;
  dependency: boolean;
  base?: Node;
  /** Its base could not be pinned (pinBase): it fails with this, never built unpinned. */
  pinError?: unknown;
  settled?: Promise<BuildAllResult>;
}

export async function buildAll(inputs: Iterable<BuildAllInput>, options: BuildAllOptions = {}): Promise<BuildAllResult[]> {
  rejectUnknownKeys("buildAll options", optionsObject("buildAll options", options), BUILD_ALL_OPTION_KEYS);
  const { concurrency = DEFAULT_BUILD_CONCURRENCY, failFast = false, onResult, signal: outer, onEvent, ...engineOptions } = options;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new ValidationError("concurrency", concurrency, "expected a whole number of at least 1");

  const listed = listInputs(inputs);
  const run = new AbortController();
  const stopOuter = () => run.abort(outer?.reason);
  if (outer?.aborted) stopOuter();
  else outer?.addEventListener("abort", stopOuter, { once: true });
  try {
    return await runGraph(listed, { concurrency, failFast, onResult, onEvent, engineOptions }, run);
  } finally {
    // The caller's signal (e.g. the CLI's) outlives the run: nothing of it stays listening.
    outer?.removeEventListener("abort", stopOuter);
  }
}

interface GraphRunOptions {
  concurrency: number;
  failFast: boolean;
  onResult: BuildAllOptions["onResult"];
  onEvent: EventListener | undefined;
  engineOptions: BuildAllEngineOptions;
}

async function runGraph(listed: ListedInput[], options: GraphRunOptions, run: AbortController): Promise<BuildAllResult[]> {
  const { concurrency, failFast, onResult, onEvent, engineOptions } = options;
  // pinBase: each chain pinned once, before the graph is made, so a base node and the copy of it
  // inside the image above carry the same digest (and the image's tag names the base built).
  // Each image (its pinning, its slot wait, its build) gets a signal of its own: the run's signal
  // carries one listener however many images there are (boundedConcurrency.ts).
  const perImage = new SignalScope(run.signal);
  const pinned = await Promise.all(listed.map((input) => perImage.run((signal) => pinInput(input, engineOptions, signal, onEvent))));
  const { requested, nodes } = graphOf(pinned);
  for (const { image } of nodes) {
    if (image.spec.base.kind === "image" && image.spec.base.digest)
      emit(onEvent, { type: "base.pinned", image: image.uri, base: image.spec.base.ref, digest: image.spec.base.digest });
  }
  const slots = new Slots(concurrency);
  const finished: BuildAllResult[] = [];

  const settle = (node: Node): Promise<BuildAllResult> =>
    (node.settled ??= buildNode(node, {
      engineOptions,
      onEvent,
      slots,
      signal: run.signal,
      scope: perImage,
      baseResult: (base) => settle(base),
    }).then((result) => {
      finished.push(result);
      if (failFast && result.action === "failed" && !run.signal.aborted) {
        run.abort(new CancelledError(`Cancelled: ${result.name} failed and failFast is set`));
      }
      try {
        onResult?.(result);
      } catch {
        /* an observer never breaks the run */
      }
      return result;
    }));

  await Promise.all(nodes.map(settle));
  const byNode = new Map(nodes.map((node) => [node, node.settled!]));
  const ordered = await Promise.all(requested.map((node) => byNode.get(node)!));
  return [...ordered, ...finished.filter((r) => r.dependency)];
}

type BuildAllEngineOptions = Omit<EngineBuildOptions, "wait" | "signal" | "onEvent">;

interface NodeContext {
  engineOptions: BuildAllEngineOptions;
  onEvent: EventListener | undefined;
  slots: Slots;
  /** The run's signal: read (aborted, reason), never listened to here — `scope` gives each image its own. */
  signal: AbortSignal;
  scope: SignalScope;
  baseResult: (base: Node) => Promise<BuildAllResult>;
}

async function buildNode(node: Node, context: NodeContext): Promise<BuildAllResult> {
  const base = node.base ? await context.baseResult(node.base) : undefined;
  const started = Date.now();
  const ended = (action: BuildAllAction, extra: Partial<BuildAllResult>): BuildAllResult => ({
    name: node.name,
    image: node.image,
    action,
    uri: extra.uri ?? node.image.uri,
    durationMs: Date.now() - started,
    dependency: node.dependency,
    ...extra,
  });
  const stopped = () => ended("cancelled", { error: context.signal.reason ?? new CancelledError("Cancelled") });
  if (base !== undefined && base.result === undefined) {
    if (base.action === "cancelled" || context.signal.aborted) return stopped();
    return ended("failed", {
      error: new BaseImageFailedError(`${node.name} was not built: its base image ${base.name} (${base.uri}) failed`, {
        hint: `Fix ${base.name} first; its error is reported above.`,
        details: { image: node.image.uri, base: base.uri },
      }),
    });
  }
  if (context.signal.aborted) return stopped();
  if (node.pinError !== undefined) {
    return ended(CancelledError.isInstance(node.pinError) ? "cancelled" : "failed", { error: node.pinError });
  }
  // Its own signal, aborted with the run's: what its slot wait and its build listen to (closed at its end).
  const own = context.scope.open();
  let release: () => void;
  try {
    release = await context.slots.acquire(own.signal);
  } catch {
    own.close();
    return stopped();
  }
  const running = Date.now();
  try {
    const result = await buildGraphNode(
      node.image,
      { ...context.engineOptions, signal: own.signal, ...(context.onEvent ? { onEvent: context.onEvent } : {}) },
      // The base is a node of this run, done by now: its result, never a second build.
      async () => base!.result!,
    );
    return {
      ...ended(result.outcome, { uri: result.uri ?? node.image.uri, result, ...(result.digest ? { digest: result.digest } : {}) }),
      durationMs: Date.now() - running,
    };
  } catch (error) {
    const cancelled = context.signal.aborted || CancelledError.isInstance(error);
    return { ...ended(cancelled ? "cancelled" : "failed", { error }), durationMs: Date.now() - running };
  } finally {
    release();
    own.close();
  }
}

interface ListedInput {
  image: Image;
  name: string | undefined;
  /** Pinning its base failed: the image fails with this error, without its chain. */
  pinError?: unknown;
}

function listInputs(inputs: Iterable<BuildAllInput>): ListedInput[] {
  const listed: ListedInput[] = [];
  let index = 0;
  for (const input of inputs) {
    const { image, name } = Image.isImage(input) ? { image: input as Image, name: undefined } : (input as { name: string; image: Image });
    if (!Image.isImage(image)) throw new ValidationError(`buildAll images[${index}]`, input, "expected an Image or { name, image }");
    listed.push({ image, name });
    index++;
  }
  return listed;
}

/** The input with its chain's base pinned (pinBase.ts) when pinning applies to it, as build() would. */
async function pinInput(input: ListedInput, options: BuildAllEngineOptions, signal: AbortSignal, onEvent: EventListener | undefined): Promise<ListedInput> {
  try {
    const globalPin = selectPinBase(options.pinBase, loadConfig(resolveProjectDir(options.projectDir)));
    if (!needsBasePin(input.image, globalPin)) return input;
    return { ...input, image: await pinBaseImage(input.image, { pinBase: globalPin, projectDir: options.projectDir, signal, onEvent }) };
  } catch (error) {
    return { ...input, pinError: error };
  }
}

/** One node per distinct image (uri + platforms) of the inputs and their chains; `requested` in input order. */
function graphOf(inputs: readonly ListedInput[]): { requested: Node[]; nodes: Node[] } {
  const nodes = new Map<string, Node>();
  const requested: Node[] = [];
  const add = (image: Image, name: string | undefined, dependency: boolean, pinError?: unknown): Node => {
    const key = `${image.uri}|${[...image.platform].sort().join(",")}${pinError === undefined ? "" : "|unpinned"}`;
    let node = nodes.get(key);
    if (node === undefined) {
      node = { key, name: name ?? image.uri, image, dependency, ...(pinError === undefined ? {} : { pinError }) };
      nodes.set(key, node);
      const base = image.baseImage;
      if (base !== undefined && pinError === undefined) node.base = add(base, undefined, true);
    } else if (!dependency && node.dependency) {
      // Asked for by name too: reported under that name, among the requested.
      node.dependency = false;
      if (name !== undefined) node.name = name;
    }
    return node;
  };
  for (const { image, name, pinError } of inputs) {
    const node = add(image, name, false, pinError);
    if (!requested.includes(node)) requested.push(node);
  }
  return { requested, nodes: [...nodes.values()] };
}
