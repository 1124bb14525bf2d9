/**
 * The HTTP agent dockerode's requests to an ssh:// DOCKER_HOST go through: each connection is a
 * `docker system dial-stdio` channel opened by dialStdio, the one ssh path Kiln has — host key
 * checked against known_hosts, typed errors, the exec deadline. docker-modem's own ssh transport
 * (`protocol: "ssh"`) makes a bare ssh2 client per request that checks no host key and that
 * Kiln cannot give a verifier to in a way that reports why it refused, so it is never used.
 */
import * as http from "node:http";
import type { Duplex } from "node:stream";
import { dialStdio, type SshEngineOptions } from "./sshDialStdio.js";

export class SshEngineAgent extends http.Agent {
  // No keep-alive: one ssh connection per request, closed with it (as docker-modem's ssh transport did).
  constructor(private readonly ssh: SshEngineOptions) {
    super({ keepAlive: false });
  }

  override createConnection(_options: unknown, callback?: (error: Error | null, stream: Duplex) => void): undefined {
    dialStdio(this.ssh, (error, stream) => callback?.(error, stream as Duplex));
    return undefined;
  }
}
