/**
 * A pool of BuildKit endpoints for one builder (one `kiln build` run):
 * - an image goes to an endpoint pinned to all of its platforms when there is one (a native arm64
 *   box for arm64 images, as buildx nodes are chosen), else to any endpoint not pinned elsewhere;
 * - among those, to the one with the fewest builds in flight (images of one run are spread);
 * - a multi-platform image that no endpoint is pinned to in full, but whose platforms are pinned to
 *   different endpoints, is split (`split`): each endpoint builds the platforms it runs natively, as
 *   buildx splits a build across nodes; platforms pinned nowhere go together to an unpinned endpoint;
 * - an endpoint that cannot be reached is skipped with a `warning` event and not tried again for a
 *   while; when none can be reached, DaemonUnavailableError names every one tried.
 * A connection is opened when its endpoint gets a build and closed when it has none left, so an idle
 * pool holds no sockets (and never keeps the process alive).
 */
import { DaemonUnavailableError, KilnError, type Architecture, type EventListener, type Image } from "@kiln/core";
import { emit } from "@kiln/core/plugin";
import { BuildKitClient } from "./client.js";
import type { BuildKitEndpoint } from "./endpoints.js";

/** How long an unreachable endpoint is left out before it is tried again. */
const DOWN_FOR_MS = 60_000;

interface Member {
  endpoint: BuildKitEndpoint;
  active: number;
  client?: Promise<BuildKitClient>;
  downUntil: number;
}

export interface PoolOptions {
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

export interface UseOptions {
  signal?: AbortSignal;
  onEvent?: EventListener;
}

export class EndpointPool {
  private readonly members: Member[];

  constructor(
    endpoints: readonly BuildKitEndpoint[],
    private readonly options: PoolOptions = {},
  ) {
    this.members = endpoints.map((endpoint) => ({ endpoint, active: 0, downUntil: 0 }));
  }

  /** The members an image may go to, best first. */
  candidates(platforms: readonly Architecture[]): BuildKitEndpoint[] {
    return this.order(platforms).map((m) => m.endpoint);
  }

  private order(platforms: readonly Architecture[]): Member[] {
    const pinnedToAll = this.members.filter((m) => m.endpoint.platforms.length > 0 && platforms.every((p) => m.endpoint.platforms.includes(p)));
    const unpinned = this.members.filter((m) => m.endpoint.platforms.length === 0);
    const rest = this.members.filter((m) => !pinnedToAll.includes(m) && !unpinned.includes(m));
    // Stable sort: fewest builds in flight first, declaration order among equals.
    const byLoad = (list: Member[]) => [...list].sort((a, b) => a.active - b.active);
    return [...byLoad(pinnedToAll), ...byLoad(unpinned), ...byLoad(rest)];
  }

  /**
   * The groups an image's platforms are built in: one group (every platform on one endpoint) unless
   * no endpoint that is up is pinned to all of them and they are pinned to several — then one group
   * per pinned endpoint (an endpoint already holding one of them takes the next it is pinned to; else
   * the least busy), plus one group of the platforms pinned nowhere. Each group then goes through
   * `use` with its own platforms, which picks (and, if it is down, replaces) its endpoint.
   */
  split(platforms: readonly Architecture[]): Architecture[][] {
    if (platforms.length < 2) return [[...platforms]];
    const now = Date.now();
    const pinned = this.members.filter((m) => m.endpoint.platforms.length > 0 && m.downUntil <= now);
    if (pinned.some((m) => platforms.every((p) => m.endpoint.platforms.includes(p)))) return [[...platforms]];
    const groups = new Map<Member | undefined, Architecture[]>();
    for (const platform of platforms) {
      const native = pinned.filter((m) => m.endpoint.platforms.includes(platform));
      const member = native.find((m) => groups.has(m)) ?? [...native].sort((a, b) => a.active - b.active)[0];
      groups.set(member, [...(groups.get(member) ?? []), platform]);
    }
    return groups.size > 1 ? [...groups.values()] : [[...platforms]];
  }

  /** Runs `work` on a reachable endpoint for `image`; the connection is released when it settles. */
  async use<T>(image: Image, platforms: readonly Architecture[], options: UseOptions, work: (client: BuildKitClient) => Promise<T>): Promise<T> {
    const member = await this.acquire(image, platforms, options);
    try {
      return await work(await member.client!);
    } finally {
      this.release(member);
    }
  }

  private async acquire(image: Image, platforms: readonly Architecture[], options: UseOptions): Promise<Member> {
    const tried: string[] = [];
    let lastError: unknown;
    const now = Date.now();
    const ordered = this.order(platforms);
    const up = ordered.filter((m) => m.downUntil <= now);
    // All marked down: try them all again rather than fail without asking.
    for (const member of up.length > 0 ? up : ordered) {
      options.signal?.throwIfAborted();
      member.active++;
      member.client ??= BuildKitClient.connect(member.endpoint, { env: this.options.env, signal: options.signal, timeoutMs: this.options.timeoutMs });
      try {
        await member.client;
        return member;
      } catch (error) {
        member.active--;
        member.client = undefined;
        if (options.signal?.aborted) throw error;
        if (KilnError.isInstance(error) && error.code !== "KILN_DAEMON_UNAVAILABLE") throw error; // a configuration error, not a down daemon
        member.downUntil = Date.now() + DOWN_FOR_MS;
        lastError = error;
        tried.push(`${member.endpoint.address} (${(error as Error).message})`);
        if (this.members.length > 1) {
          emit(options.onEvent, {
            type: "warning",
            image: image.uri,
            message: `BuildKit endpoint ${member.endpoint.address} is unreachable and was skipped: ${(error as Error).message}`,
          });
        }
      }
    }
    const addresses = ordered.map((m) => m.endpoint.address);
    // One endpoint: its own error (with its endpoint-specific hint) says it best.
    if (ordered.length === 1 && lastError) throw lastError;
    throw new DaemonUnavailableError(`No BuildKit endpoint is reachable: ${tried.join("; ")}`, {
      hint: "Start buildkitd on at least one of them, or change KILN_BUILDKIT_HOST / the builder's `endpoints`.",
      details: { endpoints: addresses },
    });
  }

  private release(member: Member): void {
    member.active--;
    if (member.active === 0 && member.client) {
      const client = member.client;
      member.client = undefined;
      void client.then(
        (c) => c.close(),
        () => undefined,
      );
    }
  }

  close(): void {
    for (const member of this.members) {
      const client = member.client;
      member.client = undefined;
      void client?.then(
        (c) => c.close(),
        () => undefined,
      );
    }
  }
}
