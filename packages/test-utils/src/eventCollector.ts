/** Collects a build's events, to read back by type. */
import type { BuildEvent } from "@kiln/core";

export interface Collector {
  events: BuildEvent[];
  onEvent: (e: BuildEvent) => void;
  of<T extends BuildEvent["type"]>(type: T): Array<Extract<BuildEvent, { type: T }>>;
}

export function collector(): Collector {
  const events: BuildEvent[] = [];
  return {
    events,
    onEvent: (e: BuildEvent) => events.push(e),
    of<T extends BuildEvent["type"]>(type: T) {
      return events.filter((e): e is Extract<BuildEvent, { type: T }> => e.type === type);
    },
  };
}
