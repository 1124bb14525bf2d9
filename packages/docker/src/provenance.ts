/**
 * Provenance labels put on every image Kiln builds. No timestamps (they would make two builds of the
 * same spec differ): the Kiln version, a digest of the tag's inputs (`kiln explain` shows them), and
 * the source commit when the sources live in a git checkout (or CI names it).
 *
 * `dev.kiln.stage=0` marks a finished image. Incremental builds label their stage images
 * `dev.kiln.stage=1`, and a label cannot be removed from an image built on top of one, so the last
 * stage overrides it; one-shot builds set the same value so both ways give the same image config.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Image } from "@kiln/core";
import { LABEL_STAGE } from "./incremental/stages.js";

export const LABEL_KILN_VERSION = "dev.kiln.version";
export const LABEL_TAG_INPUTS = "dev.kiln.tag-inputs";
export const LABEL_REVISION = "org.opencontainers.image.revision";

let cachedVersion: string | undefined;

/** This package's version (dist/index.js and src/*.ts both sit one level below package.json). */
export function kilnVersion(): string {
  if (cachedVersion) return cachedVersion;
  try {
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version?: string };
    cachedVersion = pkg.version ?? "0.0.0";
  } catch {
    cachedVersion = "0.0.0";
  }
  return cachedVersion;
}

/** sha256 over the tag explanation: equal for two builds of the same inputs, different otherwise. */
export function tagInputsDigest(image: Image): string {
  return `sha256:${createHash("sha256").update(JSON.stringify(image.explain())).digest("hex")}`;
}

/** The directory whose git commit describes the image's sources: the Dockerfile context, else the first copied folder. */
export function sourceDirOf(image: Image): string | undefined {
  const spec = image.spec;
  if (spec.base.kind === "dockerfile") return spec.base.contextHostPath;
  for (const layer of spec.layers) {
    if (layer.kind === "sourceFolder" || layer.kind === "nodeProject") return layer.hostPath;
    if (layer.kind === "sourceFile" || layer.kind === "requirements") return layer.hostPath.replace(/[/\\][^/\\]*$/, "") || "/";
  }
  return undefined;
}

/** The source commit: CI's variable when set, else `git rev-parse HEAD` in the source dir (undefined if not a checkout). */
export async function sourceRevision(dir: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  const fromCi = env.KILN_SOURCE_REVISION || env.GITHUB_SHA || env.CI_COMMIT_SHA;
  if (fromCi && /^[0-9a-f]{7,64}$/i.test(fromCi)) return fromCi.toLowerCase();
  if (!dir) return undefined;
  return new Promise((resolve) => {
    execFile("git", ["-C", dir, "rev-parse", "HEAD"], { timeout: 5000 }, (error, stdout) => {
      const sha = stdout?.trim();
      resolve(!error && /^[0-9a-f]{40,64}$/.test(sha) ? sha : undefined);
    });
  });
}

export async function provenanceLabels(image: Image): Promise<Record<string, string>> {
  const revision = await sourceRevision(sourceDirOf(image));
  return {
    [LABEL_KILN_VERSION]: kilnVersion(),
    [LABEL_TAG_INPUTS]: tagInputsDigest(image),
    [LABEL_STAGE]: "0",
    ...(revision ? { [LABEL_REVISION]: revision } : {}),
  };
}
