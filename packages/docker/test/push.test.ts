// Push logic without a daemon: what counts as an auth refusal, an abort during the retry pause, and
// the registry's description of a just-pushed manifest.
import { PushFailedError } from "@kiln/core";
import { describe, expect, it } from "vitest";
import type { DockerDaemon } from "../src/daemon/daemon.js";
import { pushedManifest } from "../src/push/multiPlatform.js";
import { AUTH_FAILURE, pushTag } from "../src/push/push.js";

describe("AUTH_FAILURE", () => {
  it.each([
    "unauthorized: authentication required",
    "denied: requested access to the resource is denied",
    "no basic auth credentials",
    "received unexpected HTTP status: 401 Unauthorized",
    "unexpected status: 403",
    "Forbidden",
  ])("is an auth refusal: %s", (text) => expect(AUTH_FAILURE.test(text)).toBe(true));

  it.each([
    "open /var/lib/docker/tmp/x: permission denied",
    "blob upload unknown: sha256:40130a9f2c unknown",
    "layer size 1403 does not match",
    "received unexpected HTTP status: 500 Internal Server Error",
  ])("is not an auth refusal: %s", (text) => expect(AUTH_FAILURE.test(text)).toBe(false));
});

describe("pushTag retries", () => {
  it("stops waiting for the next attempt as soon as the build is aborted", async () => {
    let dials = 0;
    // A daemon whose every push is refused with a transient 503 (retried after a long pause).
    const daemon = {
      dial: async () => {
        dials++;
        throw new Error("received unexpected HTTP status: 503 Service Unavailable");
      },
      translate: (error: unknown) => error,
    } as unknown as DockerDaemon;
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error("user cancelled")), 100);
    const started = Date.now();
    const error = await pushTag(
      daemon,
      {
        repository: "127.0.0.1:1/app",
        tag: "t",
        registry: "127.0.0.1:1",
        registryAuth: "e30=",
        image: "127.0.0.1:1/app:t",
        redact: (t) => t,
        idleTimeoutMs: 60_000,
        signal: controller.signal,
      },
      [60_000],
    ).catch((e) => e);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(dials).toBe(1);
    expect(controller.signal.aborted).toBe(true);
    expect(error.name).toBe("AbortError"); // the builder turns it into CancelledError
  }, 15_000);
});

describe("pushedManifest", () => {
  const pushed = { repository: "127.0.0.1:1/app", registry: "127.0.0.1:1", digest: `sha256:${"c".repeat(64)}`, size: 99 };

  function client(answers: Array<{ digest: string; mediaType: string | undefined; size?: number } | null>) {
    const asked: string[] = [];
    return {
      asked,
      headManifest: async (ref: string) => {
        asked.push(ref);
        return answers.shift() ?? null;
      },
    };
  }

  it("asks again while the registry does not hold it yet", async () => {
    const c = client([null, { digest: pushed.digest, mediaType: "application/vnd.oci.image.manifest.v1+json", size: 512 }]);
    expect(await pushedManifest(c as never, pushed, undefined, [1, 1])).toEqual({
      digest: pushed.digest,
      size: 512,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
    });
    expect(c.asked).toEqual([`${pushed.repository}@${pushed.digest}`, `${pushed.repository}@${pushed.digest}`]);
  });

  it("fails the push when the registry still does not hold it", async () => {
    const c = client([]);
    const error = await pushedManifest(c as never, pushed, undefined, [1, 1]).catch((e) => e);
    expect(PushFailedError.isInstance(error)).toBe(true);
    expect(error.message).toContain(`does not hold the pushed manifest ${pushed.digest}`);
    expect(c.asked).toHaveLength(3);
  });

  it("assumes the Docker v2 media type only when the registry answered without one", async () => {
    const c = client([{ digest: pushed.digest, mediaType: undefined }]);
    expect(await pushedManifest(c as never, pushed, undefined, [])).toEqual({
      digest: pushed.digest,
      size: 99,
      mediaType: "application/vnd.docker.distribution.manifest.v2+json",
    });
  });
});
