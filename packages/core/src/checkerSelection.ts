/**
 * Which checkers an engine call asks, in order (the first that finds the image wins):
 *
 *   build({ checkers }) / --checker > init({ imageCheckers }) > KILN_IMAGE_CHECKERS >
 *   config file `imageCheckers` > the selected builder's own `getCheckers()`.
 *
 * Names are the ones plugins register in their `kiln.imageCheckers` (what `kiln plugins` lists);
 * events and the live view show that name. An unknown name fails like an unknown builder, listing
 * the installed checkers.
 */
import type { ImageBuilder, ImageCheckerLike } from "./builder.js";
import { parseCheckerList, type CheckerChoice } from "./checkerChoice.js";
import { toNamedChecker, type NamedChecker } from "./checkers.js";
import type { LoadedConfig } from "./config.js";
import { loadImageChecker, type PluginDiscovery } from "./discovery.js";
import { UnknownCheckerError, describeValue } from "./errors.js";
import { addDevCommand } from "./packageManager.js";
import { getDiscovery, getInitOptions } from "./selection.js";

export interface SelectedCheckers {
  checkers: NamedChecker[];
  /** Which rule picked them. */
  source: "option" | "init" | "env" | "config" | "builder";
}

/** Loaded checkers by `<projectDir>\0<name>`: one instance per process, so its connections and tokens are reused. */
const loaded = new Map<string, Promise<NamedChecker>>();

/** The chain for one build call; `builderName` is how the builder was selected (to name its own checkers). */
export async function selectCheckers(
  option: readonly CheckerChoice[] | undefined,
  projectDir: string,
  config: LoadedConfig,
  builder: ImageBuilder,
  builderName: string,
): Promise<SelectedCheckers> {
  const pick = async (choices: readonly CheckerChoice[], source: SelectedCheckers["source"]): Promise<SelectedCheckers> => ({
    checkers: await Promise.all(choices.map((choice) => (typeof choice === "string" ? loadCheckerByName(choice, projectDir) : toNamedChecker(choice)))),
    source,
  });
  if (option !== undefined) return pick(option, "option");
  const fromInit = getInitOptions().imageCheckers;
  if (fromInit !== undefined) return pick(fromInit, "init");
  const fromEnv = parseCheckerList(process.env.KILN_IMAGE_CHECKERS);
  if (fromEnv) return pick(fromEnv, "env");
  if (config.imageCheckers !== undefined) return pick(config.imageCheckers, "config");
  const names = registeredNamesInPackageOf(getDiscovery(projectDir), builderName);
  const own = (builder.getCheckers?.() ?? []).map((c) => toNamedChecker(c, names.get(exportedAs(c))));
  return { checkers: own, source: "builder" };
}

/** A discovered checker by its registered name (loaded once per project). */
export function loadCheckerByName(name: string, projectDir: string): Promise<NamedChecker> {
  const key = `${projectDir}\0${name}`;
  let loading = loaded.get(key);
  if (!loading) {
    loading = (async () => {
      const discovery = getDiscovery(projectDir);
      const known = discovery.imageCheckers.some((c) => c.name === name) || discovery.problems.some((p) => p.kind === "imageChecker" && p.name === name);
      if (!known && discovery.missing.length === 0) {
        const available = discovery.imageCheckers.map((c) => c.name).sort();
        throw new UnknownCheckerError(
          `Unknown image checker ${describeValue(name)}; available: ${available.length ? available.join(", ") : "(none installed)"}`,
          {
            hint: available.length
              ? `Use one of: ${available.join(", ")} — or add the plugin that provides ${describeValue(name)} to ${projectDir}/package.json.`
              : `Install a checker plugin, e.g. \`${addDevCommand(projectDir)} @kiln/dockerhub\`.`,
            details: { name, available, projectDir },
          },
        );
      }
      return toNamedChecker(await loadImageChecker(discovery, name), name); // precise PluginLoadError (broken entry, not installed)
    })();
    loaded.set(key, loading);
    loading.catch(() => loaded.delete(key));
  }
  return loading;
}

/** The class (or constructor) name a checker is exported as, to find its registered name. */
function exportedAs(checker: ImageCheckerLike): string {
  if (typeof checker === "function") return (checker as { name?: string }).name ?? "";
  return (checker as { constructor?: { name?: string } }).constructor?.name ?? "";
}

/** Export name → registered name of the checkers the builder's own package registers. */
function registeredNamesInPackageOf(discovery: PluginDiscovery, builderName: string): Map<string, string> {
  const names = new Map<string, string>();
  const pkg = discovery.imageBuilders.find((b) => b.name === builderName)?.packageDir;
  if (pkg === undefined) return names;
  for (const checker of discovery.imageCheckers)
    if (checker.packageDir === pkg && checker.exportName !== "default") names.set(checker.exportName, checker.name);
  return names;
}
