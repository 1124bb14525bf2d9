/**
 * The Docker builder cannot write an OCI image layout (`registry: "oci:<dir>"` — the daemon pushes
 * to registries): its canBuild refuses such an image with the reason, so the engine picks a builder
 * that can (the oci builder), and a build configured with it fails up front with that reason
 * instead of building on a daemon and failing at the push.
 */
import { describe, expect, it } from "vitest";
import { CannotBuildError, Image, build } from "@kiln/core";
import { DockerImageBuilder } from "../src/index.js";

const layoutImage = () => Image.fromBase("busybox:1.36", { registry: "oci:./images", name: "team/api" }).withEnvVars({ MODE: "prod" });

describe("DockerImageBuilder.canBuild", () => {
  it("refuses an image whose registry is an OCI image layout, saying why", () => {
    const answer = new DockerImageBuilder().canBuild(layoutImage());
    expect(answer.ok).toBe(false);
    expect(answer.ok ? "" : answer.reason).toContain('"oci:./images"');
    expect(answer.ok ? "" : answer.reason).toContain("OCI image layout");
  });

  it("accepts images for a registry, and registry-less ones", () => {
    const builder = new DockerImageBuilder();
    expect(builder.canBuild(Image.fromBase("busybox:1.36", { registry: "registry.example.com/team", name: "api" }))).toEqual({ ok: true });
    expect(builder.canBuild(Image.fromBase("busybox:1.36", { name: "api" }))).toEqual({ ok: true });
  });

  it("a build configured with the Docker builder fails with that reason before any daemon is asked", async () => {
    // A daemon address where nothing listens: reaching for it would be a DaemonUnavailableError.
    const builder = new DockerImageBuilder({ env: { ...process.env, DOCKER_HOST: "unix:///nonexistent/kiln-no-daemon.sock" } });
    const failure = await build(layoutImage(), { builder }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(CannotBuildError);
    expect((failure as Error).message).toContain("OCI image layout");
  });
});
