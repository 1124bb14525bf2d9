/**
 * Core's checker conformance suite, run against the Docker builder's two checkers: the local
 * daemon's (real dockerd, the locally built busybox base) and the registry's (a real registry from
 * test-utils). Cancellation is part of the suite: an already-aborted check rejects, and an abort
 * while the request hangs (a daemon or registry that never answers) closes the request at once.
 */
import { RegistryClient } from "@kiln/core/plugin";
import { describeCheckerConformance } from "@kiln/core/testing";
import { ensureBusyboxImage, pushTestImage, startRegistry, uniqueName } from "@kiln/test-utils";
import { DockerRegistryImageChecker, LocalDockerImageChecker } from "../src/checkers.js";

// A daemon address with nothing behind it: reaching it is a DaemonUnavailableError ("could not tell").
const NO_DAEMON = "unix:///tmp/kiln-no-such-dir/docker.sock";

describeCheckerConformance("LocalDockerImageChecker", {
  create: async () => {
    const busybox = await ensureBusyboxImage();
    const colon = busybox.lastIndexOf(":");
    const repository = busybox.slice(0, colon);
    const tag = busybox.slice(colon + 1);
    return {
      checker: new LocalDockerImageChecker(),
      present: { repository, tag, platforms: ["linux/amd64"] },
      absent: { repository, tag: uniqueName("absent"), platforms: ["linux/amd64"] },
      // The local base is amd64 only (and has no `<tag>-linux-arm64` sibling).
      wrongArch: { repository, tag, platforms: ["linux/amd64", "linux/arm64"] },
      failing: () => new LocalDockerImageChecker({ env: { ...process.env, DOCKER_HOST: NO_DAEMON } }),
    };
  },
  // A "daemon" on tcp:// that accepts the inspect and never answers.
  hanging: (server) => ({
    checker: new LocalDockerImageChecker({ env: { DOCKER_HOST: `tcp://${server.host}` } }),
    target: { repository: "kiln-conformance/app", tag: "v1", platforms: ["linux/amd64"] },
  }),
});

describeCheckerConformance("DockerRegistryImageChecker", {
  create: async () => {
    const registry = await startRegistry({ auth: "basic" });
    await pushTestImage(registry, "conf/app", "v1", "oci-index-with-attestation");
    await pushTestImage(registry, "conf/amd", "v1", "docker-v2");
    const client = new RegistryClient({ useDockerConfig: false, credentials: { [registry.host]: registry.credentials! } });
    const repository = `${registry.host}/conf/app`;
    return {
      checker: new DockerRegistryImageChecker({ client }),
      present: { repository, tag: "v1", platforms: ["linux/amd64", "linux/arm64"] },
      absent: { repository, tag: "nope", platforms: ["linux/amd64"] },
      wrongArch: { repository: `${registry.host}/conf/amd`, tag: "v1", platforms: ["linux/amd64", "linux/arm64"] },
      // Wrong credentials: it must throw, not answer.
      failing: () =>
        new DockerRegistryImageChecker({
          client: new RegistryClient({ useDockerConfig: false, credentials: { [registry.host]: { username: "kiln", password: "wrong" } } }),
        }),
      cleanup: () => registry.stop(),
    };
  },
  // A loopback "registry" that never answers; patient timeouts, so only the abort ends the request.
  hanging: (server) => ({
    checker: new DockerRegistryImageChecker({
      client: new RegistryClient({
        useDockerConfig: false,
        retry: { retries: 2, baseDelayMs: 10 },
        timeouts: { connectMs: 5_000, idleMs: 30_000, totalMs: 60_000 },
      }),
    }),
    target: { repository: `${server.host}/kiln/abort`, tag: "t1", platforms: ["linux/amd64"] },
  }),
});
