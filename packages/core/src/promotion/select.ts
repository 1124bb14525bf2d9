/** Which promotion sources a build uses (precedence in sources.ts). */
import type { LoadedConfig } from "../config.js";
import { getInitOptions } from "../selection.js";
import { promoteFromEnv, validatePromoteFrom } from "./sources.js";

export interface SelectedPromoteFrom {
  /** Registries (host[:port][/namespace]), in the order they are asked. */
  sources: string[];
  /** Which rule picked them. */
  source: "option" | "init" | "env" | "config" | "default";
}

/** build({ promoteFrom }) > init({ promoteFrom }) > KILN_PROMOTE_FROM > config > none. */
export function selectPromoteFrom(option: readonly string[] | undefined, config: Pick<LoadedConfig, "promoteFrom">): SelectedPromoteFrom {
  if (option !== undefined) return { sources: validatePromoteFrom("build({ promoteFrom })", option), source: "option" };
  const fromInit = getInitOptions().promoteFrom;
  if (fromInit !== undefined) return { sources: [...fromInit], source: "init" };
  const fromEnv = promoteFromEnv();
  if (fromEnv !== undefined) return { sources: fromEnv, source: "env" };
  if (config.promoteFrom !== undefined) return { sources: [...config.promoteFrom], source: "config" };
  return { sources: [], source: "default" };
}
