/**
 * Build secrets through DockerImageBuilder itself (the wiring in builder.ts / buildOne.ts): an image
 * built in stages (a source copy, then a command with a secret), a Dockerfile's own secret mount the
 * caller did not provide, and the classic builder.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { rm } from "node:fs/promises";
import { BuildSecretsNeedBuildKitError, Image, MissingSecretError, type BuildEvent } from "@kiln/core";
import { DockerCleanup, ensureBusyboxImage, runInImage, uniqueName } from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DockerImageBuilder } from "../src/builder.js";
import { tempTree } from "./helpers.js";

const cleanup = new DockerCleanup();
const dirs: string[] = [];
let busybox: string;
const VALUE = `builder-secret-${Date.now()}`;
const sha = (v: string) => createHash("sha256").update(v).digest("hex");

beforeAll(async () => {
  busybox = await ensureBusyboxImage();
});
afterAll(async () => {
  await cleanup.run();
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

describe("DockerImageBuilder with build secrets", () => {
  it("an incremental (staged) build serves the secret (options beat the environment) to the step that declares it; the log shows ***", async () => {
    const src = await tempTree({ "app.txt": "app\n", "later.txt": "later\n" });
    dirs.push(src);
    const image = Image.fromBase(busybox, { name: uniqueName("kiln-bsec-builder") })
      .withSourceFile(`${src}/app.txt`, "/app/app.txt")
      .withCommands(
        `test "$(sha256sum < /run/secrets/TOKEN | cut -d' ' -f1)" = "${sha(VALUE)}" && echo "got $(cat /run/secrets/TOKEN)" && cp /app/app.txt /copied`,
        { secrets: ["TOKEN"] },
      )
      .withSourceFile(`${src}/later.txt`, "/app/later.txt");
    cleanup.image(image.uri);
    const events: BuildEvent[] = [];
    // The option beats the builder's environment (which holds a wrong value).
    const result = await new DockerImageBuilder({ buildkit: true, env: { ...process.env, TOKEN: "wrong-value" } }).buildImage(image, {
      secrets: { TOKEN: VALUE },
      onEvent: (e) => events.push(e),
    });
    expect(result.uri).toBe(image.uri);
    expect(events.filter((e) => e.type === "build.stage").length).toBeGreaterThan(1);
    expect(JSON.stringify(events)).not.toContain(VALUE);
    expect(events.some((e) => e.type === "build.log" && e.line.includes("got ***"))).toBe(true);
    expect((await runInImage(image.uri, ["cat", "/copied"])).trim()).toBe("app");
  });

  it("after a non-root withUser the step can read its secret (mounted 0444 for that RUN only)", async () => {
    const image = Image.fromBase(busybox, { name: uniqueName("kiln-bsec-user") })
      .withUser("65534:65534")
      .withCommands(`test "$(id -u)" = 65534 && test "$(sha256sum < /run/secrets/TOKEN | cut -d' ' -f1)" = "${sha(VALUE)}"`, { secrets: ["TOKEN"] });
    cleanup.image(image.uri);
    const result = await new DockerImageBuilder({ buildkit: true }).buildImage(image, { secrets: { TOKEN: VALUE } });
    expect(result.uri).toBe(image.uri);
    // Nothing stays at the mount point once the step is done.
    expect((await runInImage(image.uri, ["sh", "-c", "ls /run/secrets 2>/dev/null | wc -l"])).trim()).toBe("0");
  });

  it("a declared secret with no value (no option, no environment variable) fails before any build", async () => {
    const image = Image.fromBase(busybox, { name: uniqueName("kiln-bsec-missing") }).withCommands("cat /run/secrets/NOT_SET_ANYWHERE_X > /dev/null", {
      secrets: ["NOT_SET_ANYWHERE_X"],
    });
    const events: BuildEvent[] = [];
    const error = await new DockerImageBuilder({ buildkit: true }).buildImage(image, { onEvent: (e) => events.push(e) }).catch((e: unknown) => e);
    expect(MissingSecretError.isInstance(error), String(error)).toBe(true);
    expect((error as Error).message).toContain("NOT_SET_ANYWHERE_X");
    expect(events.filter((e) => e.type === "build.step")).toEqual([]);
  });

  it("fromDockerfile({ secrets }): the user's own RUN --mount=type=secret gets its value; nothing of it in the image", async () => {
    const dir = await tempTree({
      Dockerfile: `FROM ${busybox}\nRUN --mount=type=secret,id=NPM_TOKEN,required=true test "$(sha256sum < /run/secrets/NPM_TOKEN | cut -d' ' -f1)" = "${sha(VALUE)}" && echo ok > /proof\n`,
    });
    dirs.push(dir);
    const image = Image.fromDockerfile(`${dir}/Dockerfile`, { context: dir, name: uniqueName("kiln-bsec-dockerfile"), secrets: ["NPM_TOKEN"] });
    cleanup.image(image.uri);
    const result = await new DockerImageBuilder({ buildkit: true }).buildImage(image, { secrets: { NPM_TOKEN: VALUE } });
    expect(result.uri).toBe(image.uri);
    expect((await runInImage(image.uri, ["cat", "/proof"])).trim()).toBe("ok");
    const saved = spawnSync("docker", ["save", image.uri], { maxBuffer: 1 << 28 });
    expect(saved.status).toBe(0);
    expect(saved.stdout.length).toBeGreaterThan(1000);
    expect(saved.stdout.includes(Buffer.from(VALUE))).toBe(false);
    const error = await new DockerImageBuilder({ buildkit: false }).buildImage(image, { secrets: { NPM_TOKEN: VALUE } }).catch((e: unknown) => e);
    expect(BuildSecretsNeedBuildKitError.isInstance(error), String(error)).toBe(true);
  });

  it("a Dockerfile's own required secret mount the caller did not give: MissingSecretError naming it", async () => {
    const dir = await tempTree({ Dockerfile: `FROM ${busybox}\nRUN --mount=type=secret,id=OWN_SECRET,required=true cat /run/secrets/OWN_SECRET\n` });
    dirs.push(dir);
    const image = Image.fromDockerfile(`${dir}/Dockerfile`, { context: dir, name: uniqueName("kiln-bsec-own") }).withCommands("true", {
      secrets: ["DECLARED"],
    });
    cleanup.image(image.uri);
    const error = await new DockerImageBuilder({ buildkit: true }).buildImage(image, { secrets: { DECLARED: VALUE } }).catch((e: unknown) => e);
    expect(MissingSecretError.isInstance(error), String(error)).toBe(true);
    expect((error as Error).message).toContain("OWN_SECRET");
    expect(String(error)).not.toContain(VALUE);
  });

  it("the classic builder refuses a secret image with a typed error and a hint", async () => {
    const image = Image.fromBase(busybox, { name: uniqueName("kiln-bsec-classic") }).withCommands("true", { secrets: ["TOKEN"] });
    const error = await new DockerImageBuilder({ buildkit: false }).buildImage(image, { secrets: { TOKEN: VALUE } }).catch((e: unknown) => e);
    expect(BuildSecretsNeedBuildKitError.isInstance(error), String(error)).toBe(true);
    expect((error as { hint?: string }).hint).toMatch(/BuildKit/);
  });
});
