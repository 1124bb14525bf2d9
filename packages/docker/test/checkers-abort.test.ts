// The Docker builder's checkers honour the caller's AbortSignal: a hanging registry request is cut
// (its socket closed), and the local checker stops before its next daemon read.
import { createServer, type Server, type Socket } from "node:net";
import { CancelledError } from "@kiln/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalDockerImageChecker, RegistryImageChecker } from "../src/checkers.js";

let server: Server;
let port: number;
const sockets: Socket[] = [];
const closed: Socket[] = [];
const requested: Socket[] = [];

beforeAll(async () => {
  // A "registry" that accepts connections and never answers.
  server = createServer((socket) => {
    sockets.push(socket);
    socket.on("close", () => closed.push(socket));
    socket.once("data", () => requested.push(socket));
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as { port: number }).port;
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await new Promise((resolve) => server.close(resolve));
});

describe("the Docker builder's checkers and the AbortSignal", () => {
  it("RegistryImageChecker: an abort mid-request rejects with CancelledError within 1 s and closes the socket", async () => {
    const controller = new AbortController();
    const started = Date.now();
    const pending = new RegistryImageChecker().imageExists(`localhost:${port}/kiln/abort`, "t1", ["linux/amd64"], { signal: controller.signal });
    const settled = pending.catch((e: unknown) => e);
    // Mid-request: the HEAD has reached the registry, which never answers.
    while (requested.length === 0 && Date.now() - started < 5_000) await new Promise((r) => setTimeout(r, 10));
    expect(requested.length).toBe(1);
    const abortedAt = Date.now();
    controller.abort();
    const error = await settled;
    expect(CancelledError.isInstance(error), String(error)).toBe(true);
    expect(Date.now() - abortedAt).toBeLessThan(1_000);
    for (let i = 0; i < 50 && !closed.includes(requested[0]!); i++) await new Promise((r) => setTimeout(r, 20));
    expect(closed).toContain(requested[0]);
    expect(sockets.length).toBe(1); // no retry after the abort
  });

  it("LocalDockerImageChecker: an aborted signal ends the check before asking the daemon", async () => {
    const controller = new AbortController();
    controller.abort();
    // A daemon address that does not exist: reaching it would be a DaemonUnavailableError instead.
    const checker = new LocalDockerImageChecker({ env: { ...process.env, DOCKER_HOST: "unix:///tmp/kiln-no-such-dir/docker.sock" } });
    const error = await checker.imageExists("kiln-local-abort", "t1", ["linux/amd64"], { signal: controller.signal }).catch((e: unknown) => e);
    expect(CancelledError.isInstance(error), String(error)).toBe(true);
  });
});
