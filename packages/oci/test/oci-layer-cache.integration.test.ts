/**
 * The layer-digest cache: a rebuild after a one-file edit writes only the layer whose file changed;
 * an unchanged layer comes from the cache (its step says "(cached)") and is not written at all when
 * the registry holds it; a target without it gets it written on demand with the cached digest; and
 * the image is the same as a build with no cache at all.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import { Image, RegistryClient } from "@kiln/core";
import { docker, ensureBusyboxImage, startRegistry } from "@kiln/test-utils";
import { OciImageBuilder } from "../src/index.js";
import { OCI_ENV, TempDirs, baseRegistryForFile, buildRecordingSteps } from "./helpers.js";

const tempDirs = new TempDirs();
const base = baseRegistryForFile(ensureBusyboxImage, "kiln/busybox:1.35", { tempDirs });
const temp = (p: string) => tempDirs.make(p);

it("a one-file edit rewrites only that layer; cached layers are written on demand for a target that lacks them; same digests as with no cache", async () => {
  const src = temp("kiln-oci-cache-src-");
  mkdirSync(join(src, "data"));
  mkdirSync(join(src, "app"));
  for (let i = 0; i < 5; i++) writeFileSync(join(src, "data", `f${i}.bin`), Buffer.alloc(100_000, i));
  writeFileSync(join(src, "app", "main.sh"), "echo v1\n");
  const declare = (name: string, reg = base.registry.host) =>
    Image.fromBase(base.ref)
      .withSourceFolder(join(src, "data"), "/data")
      .withSourceFolder(join(src, "app"), "/app")
      .clone({ registry: reg, name, platform: ["linux/amd64"] });
  const cacheDir = temp("kiln-oci-cache-dir-");
  const client = new RegistryClient({ useDockerConfig: false });
  const env = OCI_ENV;
  const cachedBuilder = new OciImageBuilder({ client, env, layerCache: cacheDir });

  const first = await buildRecordingSteps(cachedBuilder, declare("kiln/cache"));
  expect(first.steps).toEqual(["COPY sourceFolder -> /data", "COPY sourceFolder -> /app"]);

  writeFileSync(join(src, "app", "main.sh"), "echo v2\n");
  const second = await buildRecordingSteps(cachedBuilder, declare("kiln/cache"));
  expect(second.steps).toEqual(["COPY sourceFolder -> /data (cached)", "COPY sourceFolder -> /app"]);
  expect(second.built.digest).not.toBe(first.built.digest);
  const uncached = await buildRecordingSteps(new OciImageBuilder({ client, env, layerCache: false }), declare("kiln/nocache"));
  expect(uncached.built.digest).toBe(second.built.digest);

  // Another registry (no blob there): the cached /data layer is written on demand and uploaded.
  const other = await startRegistry({ auth: "none" });
  try {
    const elsewhere = await buildRecordingSteps(cachedBuilder, declare("kiln/cache", other.host));
    expect(elsewhere.steps).toEqual(["COPY sourceFolder -> /data (cached)", "COPY sourceFolder -> /app (cached)"]);
    expect(elsewhere.built.digest).toBe(second.built.digest);
    const out = await docker(
      ["run", "--rm", "--network", "none", `${other.host}/kiln/cache:${declare("kiln/cache").tag}`, "sh", "-c", "cat /app/main.sh; ls /data | wc -l"],
      { timeoutMs: 120_000 },
    );
    expect(out).toContain("echo v2");
    expect(out.trim().endsWith("5")).toBe(true);
  } finally {
    await docker(["image", "rm", "-f", `${other.host}/kiln/cache:${declare("kiln/cache").tag}`]).catch(() => undefined);
    await other.stop();
  }
}, 300_000);
