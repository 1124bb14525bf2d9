// DEBUG=* turns on docker-modem's request log, which prints each request's options — a push's
// X-Registry-Auth header with them. Kiln excludes that namespace; nothing else it logs holds a
// credential. (Own file: DEBUG is process-wide, and the debug module reads it when first loaded.)
import { createRequire } from "node:module";
import { rm } from "node:fs/promises";
import { Image, RegistryClient } from "@kiln/core";
import { DockerCleanup, ensureBusyboxImage, startRegistry, uniqueName, type TestRegistry } from "@kiln/test-utils";
import { afterAll, describe, expect, it } from "vitest";
import { DockerImageBuilder } from "../src/builder.js";
import { encodeRegistryAuth } from "../src/push/registryAuth.js";
import { dockerConfigWith } from "./helpers.js";

process.env.DEBUG = "*";

const cleanup = new DockerCleanup();
const dirs: string[] = [];
let registry: TestRegistry | undefined;
afterAll(async () => {
  await cleanup.run();
  await registry?.stop();
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** The debug module docker-modem itself uses. */
function modemsDebug(): (namespace: string) => (text: string) => void {
  const fromDockerode = createRequire(createRequire(import.meta.url).resolve("dockerode"));
  return createRequire(fromDockerode.resolve("docker-modem"))("debug");
}

describe("DEBUG=*", () => {
  it("a push's debug output holds no credential", async () => {
    const busybox = await ensureBusyboxImage();
    registry = await startRegistry({ auth: "basic" });
    const { username, password } = registry.credentials!;
    const config = await dockerConfigWith(registry.host, username, password);
    dirs.push(config);
    const env = { ...process.env, DOCKER_CONFIG: config };
    const image = Image.fromBase(busybox, { registry: registry.host, name: uniqueName("kiln-debug") }).withCommands("true");
    cleanup.image(image.uri);

    const written: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
      written.push(String(chunk));
      return write(chunk, ...rest);
    }) as typeof process.stderr.write;
    let result;
    try {
      result = await new DockerImageBuilder({ env, incremental: false }).buildImage(image, {});
      // Debug output is on in this process (the exclusion is of docker-modem only).
      modemsDebug()("kiln-debug-probe")("probe line");
    } finally {
      process.stderr.write = write;
    }
    expect((await new RegistryClient({ env }).headManifest(image.uri))?.digest).toBe(result.digest);
    const stderr = written.join("");
    expect(stderr).toContain("kiln-debug-probe");
    for (const secret of [
      password,
      Buffer.from(`${username}:${password}`).toString("base64"),
      encodeRegistryAuth(registry.host, { username, password }).header,
    ]) {
      expect(stderr).not.toContain(secret);
    }
  });
});
