/**
 * Everything the engine, checkers and builders do is reported as one of these events, so the CLI
 * can draw progress, `--json` can stream them and a program can log them. Events never carry
 * credentials. `image` is the image URI the event is about.
 */
import type { Architecture } from "./layers.js";
import { redactSecrets } from "./redact.js";

export interface SerializedError {
  name: string;
  code: string;
  message: string;
  hint?: string;
}

interface EventBase {
  /** Milliseconds since the epoch. */
  time: number;
  image: string;
}

export type BuildEvent =
  | (EventBase & { type: "check.start"; checker: string; platforms: Architecture[] })
  | (EventBase & {
      type: "check.result";
      checker: string;
      result: "present" | "absent" | "error";
      /** The URI the checker found, when present. */
      uri?: string;
      error?: SerializedError;
    })
  | (EventBase & { type: "check.skipped"; reason: "force" | "latest" | "no-checkers" | "no-build-needed" })
  | (EventBase & { type: "build.start"; builder: string; platforms: Architecture[]; dryRun: boolean })
  /**
   * Why the image is (or, in a dry run, would be) built: what changed since the last recorded tag of
   * the same image name (`.kiln/explain`, explainDiff.ts), in one line. Only when that name had
   * another tag before.
   */
  | (EventBase & { type: "build.reason"; previousTag: string; reason: string })
  /** pinBase resolved the base reference to this digest (part of the tag and of `FROM ref@digest`). */
  | (EventBase & { type: "base.pinned"; base: string; digest: string })
  /** A build step started (or was taken from cache). */
  | (EventBase & {
      type: "build.step";
      platform?: Architecture;
      step: string;
      index?: number;
      total?: number;
      cached?: boolean;
    })
  | (EventBase & { type: "build.log"; platform?: Architecture; step?: string; line: string })
  /**
   * Incremental builds: one stage of the image (its steps up to and including one that copies context
   * files), either reused from the daemon (`reused`) or built now (`built`, with the context bytes sent).
   */
  | (EventBase & {
      type: "build.stage";
      platform?: Architecture;
      /** 0-based stage index and the number of stages. */
      stage: number;
      stages: number;
      /** The stage's local reference (`kiln-stage/<name>:<key>`), or the image URI for the last stage. */
      ref: string;
      status: "reused" | "built";
      /** Bytes of build context sent for this stage (built stages only). */
      contextBytes?: number;
    })
  /** Platforms of a multi-platform image already present in the registry (not rebuilt). */
  | (EventBase & { type: "build.platforms-present"; present: Architecture[]; missing: Architecture[] })
  | (EventBase & {
      type: "push.progress";
      layer: string;
      status: string;
      current?: number;
      total?: number;
    })
  | (EventBase & { type: "push.done"; digest?: string; platform?: Architecture })
  /**
   * A registry (or its token service) answered 429, or sent rate-limit headers (Docker Hub does on
   * every answer). For a 429 the client retries: `waitMs` (its Retry-After, or the back-off) is the
   * wait starting now before retry `attempt`; both are absent when the client gives up instead.
   * `url` never holds credentials nor a query string.
   */
  | (EventBase & {
      type: "registry.ratelimit";
      registry: string;
      /** host[:port] the request went to (the registry's API host, its token service, a redirect target). */
      host: string;
      /** The request's URL: origin and path only. */
      url: string;
      status: number;
      limit?: number;
      remaining?: number;
      retryAfterSeconds?: number;
      /** The retry the client waits for (1 for the first), when it retries. */
      attempt?: number;
      waitMs?: number;
    })
  /**
   * The client waits `waitMs` (= `delayMs`) before retry `attempt` (1 for the first) of a request that
   * failed transiently: HTTP `status` (408, 429, 5xx), or a transport failure / damaged answer (no
   * status; `reason` says which). `url` never holds credentials nor a query string.
   */
  | (EventBase & {
      type: "registry.retry";
      registry: string;
      host: string;
      url: string;
      attempt: number;
      waitMs: number;
      /** The same as `waitMs` (the original field name). */
      delayMs: number;
      status?: number;
      reason: string;
    })
  | (EventBase & {
      type: "lock.wait";
      /** The lock file, or where a shared provider keeps the lease (e.g. a Redis key). */
      lockPath: string;
      /** The lock provider ("file" when absent). */
      provider?: string;
      /** Who holds it (host/pid), when known; a new holder means another host took over. */
      holder?: string;
      waitedMs?: number;
    })
  /** The build lease is held; `fallback` when the shared provider was unreachable and the per-host lock was taken instead. */
  | (EventBase & { type: "lock.acquired"; provider: string; fencingToken: number; waitedMs: number; fallback?: boolean })
  /** The build lease ended before the push (expired, taken over, unconfirmable): nothing is pushed under it. */
  | (EventBase & { type: "lock.lost"; provider: string; message: string })
  /**
   * The shared check cache's answer: `hit` (present, fresh), `verified` (present, older than the TTL,
   * its digest confirmed by one HEAD), `invalid` (its digest is gone: ignored and dropped), `absent`
   * (checked absent seconds ago), `miss`, `error` (unreachable: checked without it).
   */
  | (EventBase & {
      type: "cache.result";
      cache: string;
      result: "hit" | "verified" | "invalid" | "absent" | "miss" | "error";
      digest?: string;
      ageMs?: number;
      message?: string;
    })
  /**
   * Promotion: the image is absent at its target but `source` (a `promoteFrom` registry) holds it, so
   * it is copied instead of built — blobs mounted (`mode` "mount", same registry host) or streamed.
   */
  | (EventBase & { type: "promote.start"; source: string; target: string; platforms: string[]; mode: "mount" | "stream" })
  /** The promotion finished: the target's tag names `digest`; how many blobs were mounted, copied or already there. */
  | (EventBase & {
      type: "promote.done";
      source: string;
      target: string;
      digest: string;
      durationMs: number;
      mounted: number;
      copied: number;
      existing: number;
      bytesCopied: number;
    })
  | (EventBase & {
      type: "done";
      uri: string;
      digest?: string;
      /** Set when the image was promoted (copied) from this reference instead of built. */
      promotedFrom?: string;
      durationMs: number;
      /** False when an existing image was found (or dry run). */
      built: boolean;
      dryRun: boolean;
    })
  /** Something the user should know that does not stop the build (e.g. a plugin that failed to load). */
  | (EventBase & { type: "warning"; message: string })
  | (EventBase & { type: "error"; error: SerializedError });

export type BuildEventType = BuildEvent["type"];

/** Distributive Omit so each member keeps its own fields. */
export type BuildEventInput = BuildEvent extends infer E ? (E extends BuildEvent ? Omit<E, "time"> : never) : never;

export type EventListener = (event: BuildEvent) => void;

/**
 * Stamps the time on an event and hands it to a listener; a throwing listener never breaks a build.
 * Free text (log lines, step names, warnings) is redacted here, and the engine hands builders a
 * redactingListener, so every renderer and every program listening gets events without credentials
 * in them, whatever plugin produced them.
 */
export function emit(listener: EventListener | undefined, event: BuildEventInput): void {
  if (!listener) return;
  try {
    listener(redactEvent({ ...event, time: Date.now() } as BuildEvent));
  } catch {
    // A logging callback must not fail the build it observes.
  }
}

/** The event with credentials removed from its free text (log lines, step names, warnings). */
export function redactEvent(event: BuildEvent): BuildEvent {
  const text = event as BuildEvent & { line?: unknown; step?: unknown; message?: unknown };
  if (typeof text.line !== "string" && typeof text.step !== "string" && typeof text.message !== "string") return event;
  const clean = { ...text };
  if (typeof clean.line === "string") clean.line = redactSecrets(clean.line);
  if (typeof clean.step === "string") clean.step = redactSecrets(clean.step);
  if (typeof clean.message === "string") clean.message = redactSecrets(clean.message);
  return clean as BuildEvent;
}

/** A listener handed to plugin code: whatever it reports reaches `listener` redacted. */
export function redactingListener(listener: EventListener): EventListener {
  return (event) => listener(redactEvent(event));
}
