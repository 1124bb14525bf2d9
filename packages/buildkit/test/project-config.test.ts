// builderOptions.buildkit in the project's kiln.config.json (or package.json's `kiln` field): validated
// by the builder, applied after the constructor's options and the environment.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, Image } from "@kiln/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BuildKitImageBuilder } from "../src/builder.js";
import { resolveCache } from "../src/cache.js";
import { parseEndpoint } from "../src/endpoints.js";
import { configuredBuildKitOptions } from "../src/projectConfig.js";

let project: string;
beforeEach(() => {
  project = mkdtempSync(join(tmpdir(), "kiln-bk-config-"));
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "app", private: true }));
});
afterEach(() => rmSync(project, { recursive: true, force: true }));

const configure = (buildkit: unknown) => writeFileSync(join(project, "kiln.config.json"), JSON.stringify({ builderOptions: { buildkit } }));

describe("builderOptions.buildkit", () => {
  it("endpoints, mTLS files (relative to the config file) and the registry cache come from the project's config", () => {
    mkdirSync(join(project, "certs"));
    for (const f of ["ca", "cert", "key"]) writeFileSync(join(project, "certs", `${f}.pem`), `${f}-pem`);
    configure({
      endpoints: ["tcp://buildkitd.internal:1234", { host: "unix:///run/arm/buildkitd.sock", platforms: ["linux/arm64"] }],
      tls: { ca: "certs/ca.pem", cert: "certs/cert.pem", key: "certs/key.pem", serverName: "buildkitd" },
      cacheFrom: true,
      cacheTo: "auto",
      networkMode: "host",
      connectTimeoutMs: 3000,
    });
    const builder = new BuildKitImageBuilder({ env: {}, projectDir: project });
    expect(builder.endpoints.map((e) => [e.address, e.platforms])).toEqual([
      ["tcp://buildkitd.internal:1234", []],
      ["unix:///run/arm/buildkitd.sock", ["linux/arm64"]],
    ]);
    expect(builder.endpoints[0]!.tls).toEqual({
      ca: Buffer.from("ca-pem"),
      cert: Buffer.from("cert-pem"),
      key: Buffer.from("key-pem"),
      serverName: "buildkitd",
    });
    const configured = configuredBuildKitOptions(project);
    expect(configured).toMatchObject({ cacheFrom: true, cacheTo: true, networkMode: "host", connectTimeoutMs: 3000, file: join(project, "kiln.config.json") });
    const image = Image.fromBase("busybox", { registry: "127.0.0.1:5000", name: "api" });
    expect(resolveCache(image, {}, parseEndpoint({ host: "unix:///run/bk.sock" }), {}, configured)).toEqual({
      cacheImports: [{ type: "registry", attrs: { ref: "127.0.0.1:5000/api:buildcache" } }],
      cacheExports: [{ type: "registry", attrs: { ref: "127.0.0.1:5000/api:buildcache", mode: "max" } }],
    });
  });

  it("the constructor's options win, then KILN_BUILDKIT_*, then the config; package.json's kiln field is read too", () => {
    writeFileSync(
      join(project, "package.json"),
      JSON.stringify({ name: "app", kiln: { builderOptions: { buildkit: { endpoints: "unix:///from/package.sock", cacheTo: "x/y:c" } } } }),
    );
    expect(new BuildKitImageBuilder({ env: {}, projectDir: project }).endpoints.map((e) => e.address)).toEqual(["unix:///from/package.sock"]);
    expect(new BuildKitImageBuilder({ env: { KILN_BUILDKIT_HOST: "unix:///from/env.sock" }, projectDir: project }).endpoints.map((e) => e.address)).toEqual([
      "unix:///from/env.sock",
    ]);
    expect(
      new BuildKitImageBuilder({ env: { KILN_BUILDKIT_HOST: "unix:///from/env.sock" }, projectDir: project, endpoints: ["docker-engine"] }).endpoints.map(
        (e) => e.address,
      ),
    ).toEqual(["docker-engine"]);
    expect(new BuildKitImageBuilder({ env: {}, projectDir: false }).endpoints.map((e) => e.address)).toEqual(["docker-engine"]);
    const image = Image.fromBase("busybox", { registry: "127.0.0.1:5000", name: "api" });
    const endpoint = parseEndpoint({ host: "unix:///run/bk.sock" });
    const configured = configuredBuildKitOptions(project);
    expect(resolveCache(image, {}, endpoint, { KILN_BUILDKIT_CACHE_TO: "env/ref:c" }, configured).cacheExports[0]!.attrs.ref).toBe("env/ref:c");
    expect(resolveCache(image, {}, endpoint, {}, configured).cacheExports[0]!.attrs.ref).toBe("x/y:c");
  });

  it.each([
    [{ bogus: 1 }, "builderOptions.buildkit.bogus"],
    [{ endpoints: [] }, "builderOptions.buildkit.endpoints"],
    [{ endpoints: [{ host: "tcp://x:1", port: 2 }] }, "builderOptions.buildkit.endpoints[0].port"],
    [{ tls: { ca: 5 } }, "builderOptions.buildkit.tls.ca"],
    [{ cacheTo: ["a", "b"] }, "builderOptions.buildkit.cacheTo"],
    [{ networkMode: "bridge" }, "builderOptions.buildkit.networkMode"],
    [{ connectTimeoutMs: -1 }, "builderOptions.buildkit.connectTimeoutMs"],
  ])("%j is a ConfigError naming the file and %s — at the first build, not at construction", async (section, key) => {
    configure(section);
    const builder = new BuildKitImageBuilder({ env: {}, projectDir: project });
    const error = await builder.buildImage(Image.fromBase("busybox", { name: "x" }).withCommands("true"), {}).catch((e) => e);
    expect(ConfigError.isInstance(error)).toBe(true);
    expect(error.message).toContain(join(project, "kiln.config.json"));
    expect(error.details).toMatchObject({ key });
  });
});
