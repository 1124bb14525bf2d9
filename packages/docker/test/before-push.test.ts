// The engine's lease check before a push (BuildImageOptions.beforePush), without a daemon: asked
// before every attempt, and a rejection means the daemon is never asked to push.
import { LeaseLostError } from "@kiln/core";
import { describe, expect, it } from "vitest";
import type { DockerDaemon } from "../src/daemon/daemon.js";
import { pushTag } from "../src/push/push.js";

const options = {
  repository: "127.0.0.1:1/app",
  tag: "t",
  registry: "127.0.0.1:1",
  registryAuth: "e30=",
  image: "127.0.0.1:1/app:t",
  redact: (t: string) => t,
  idleTimeoutMs: 60_000,
};

describe("pushTag and beforePush", () => {
  it("a lost lease: the push is refused before the daemon is dialled", async () => {
    let dials = 0;
    const daemon = { dial: async () => void dials++, translate: (e: unknown) => e } as unknown as DockerDaemon;
    const lost = new LeaseLostError("The build lease for 127.0.0.1:1/app:t was lost before the push");
    const error = await pushTag(
      daemon,
      {
        ...options,
        beforePush: async () => {
          throw lost;
        },
      },
      [],
    ).catch((e: unknown) => e);
    expect(error).toBe(lost);
    expect(dials).toBe(0);
  });

  it("is asked again before each retry: a lease lost during the pause stops the retry", async () => {
    let dials = 0;
    let asked = 0;
    const daemon = {
      dial: async () => {
        dials++;
        throw new Error("received unexpected HTTP status: 503 Service Unavailable");
      },
      translate: (e: unknown) => e,
    } as unknown as DockerDaemon;
    const beforePush = async () => {
      if (++asked > 1) throw new LeaseLostError("lost during the retry pause");
    };
    const error = await pushTag(daemon, { ...options, beforePush }, [10]).catch((e: unknown) => e);
    expect(LeaseLostError.isInstance(error)).toBe(true);
    expect(asked).toBe(2);
    expect(dials).toBe(1);
  });
});
