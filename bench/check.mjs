#!/usr/bin/env node
/**
 * Registry check benchmark (issue 4). Against a real local registry (distribution 2.8) started here,
 * in the same run, medians of RUNS runs each, runs of the compared commands interleaved:
 *
 *   A. one existence check inside a warm process (RegistryClient from the built @kiln/core)
 *      vs one `skopeo inspect --raw --tls-verify=false docker://…` process.       target ≤ 0.5×
 *      (also reported: a platform check [HEAD + manifest GET] on a fresh client in the warm process)
 *   B. the whole `kiln check <ref> --platform linux/amd64,linux/arm64` command vs `node -e 0`.
 *                                                                                    target ≤ 2.5×
 *   C. 100 images (100 tags in the registry) in one `kiln plan` vs 100 sequential
 *      `skopeo inspect --raw` processes.                                              target ≤ 0.1×
 *
 * Needs: `pnpm --filter @kiln/core build` first; /usr/bin/docker-registry and skopeo on PATH.
 * Usage: node bench/check.mjs [--runs N] [--json]
 */
import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { importTestRegistry, snapshotBuiltCore } from "./lib/coreSnapshot.mjs";

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const RUNS = Math.max(10, Number(args[args.indexOf("--runs") + 1]) || 15);
const asJson = args.includes("--json");

// Work on a snapshot of the built core (bench/.work/core), so a rebuild running meanwhile in the
// checkout cannot pull files from under the measurement.
const snapshot = snapshotBuiltCore(root, "core", "bench/check.mjs");
const coreDist = path.join(snapshot, "dist/index.js");
const cliMain = path.join(snapshot, "dist/cli/main.js");
// The test services are TypeScript: loaded through tsx.
const { startRegistry, pushTestImage, putTestManifest } = await importTestRegistry(root);
const { RegistryClient, checkImage } = await import(pathToFileURL(coreDist).href);

execFileSync("skopeo", ["--version"], { stdio: "ignore" });

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const time = async (fn) => {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
};

const registry = await startRegistry({ auth: "none" });
try {
  await pushTestImage(registry, "bench/app", "v1", "oci-index-with-attestation");
  const ref = `${registry.host}/bench/app:v1`;

  // A. Warm process: one client, already connected, reused (how `kiln plan` and the engine use it).
  const warm = new RegistryClient({ useDockerConfig: false });
  await warm.headManifest(ref);
  const inProcess = [];
  const inProcessPlatforms = [];
  const skopeo = [];
  for (let i = 0; i < RUNS; i++) {
    inProcess.push(
      await time(async () => {
        if (!(await warm.headManifest(ref))) throw new Error("bench image missing");
      }),
    );
    inProcessPlatforms.push(
      await time(async () => {
        const answer = await checkImage(ref, { platforms: ["linux/amd64", "linux/arm64"], client: new RegistryClient({ useDockerConfig: false }) });
        if (!answer.present) throw new Error("bench image missing");
      }),
    );
    skopeo.push(await time(() => run("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${ref}`])));
  }

  // B. The whole CLI command vs bare node start-up.
  const cli = [];
  const nodeBare = [];
  const cliAvailable = existsSync(cliMain);
  if (cliAvailable) {
    const env = { ...process.env, DOCKER_CONFIG: path.join(root, "bench/.work/no-docker-config") };
    for (let i = 0; i < RUNS; i++) {
      cli.push(await time(() => run(process.execPath, [cliMain, "check", ref, "--platform", "linux/amd64,linux/arm64"], { env })));
      nodeBare.push(await time(() => run(process.execPath, ["-e", "0"])));
    }
  }

  // C. 100 images: the same index under 100 tags; one `kiln plan` vs 100 sequential skopeo calls.
  const plan = [];
  const skopeo100 = [];
  if (cliAvailable) {
    const index = await (await fetch(`${registry.url}/v2/bench/app/manifests/v1`, { headers: { accept: "application/vnd.oci.image.index.v1+json" } })).json();
    const tags = Array.from({ length: 100 }, (_, i) => `t${i}`);
    for (const tag of tags) await putTestManifest(registry, "bench/app", tag, index, index.mediaType);
    const work = path.join(root, "bench/.work");
    mkdirSync(work, { recursive: true });
    const spec = path.join(work, "plan100.mjs");
    writeFileSync(
      spec,
      `import { Image } from ${JSON.stringify(pathToFileURL(coreDist).href)};\n` +
        `const base = Image.fromDebianBase({ registry: ${JSON.stringify(registry.host)}, name: "bench/app", installer: "pip" });\n` +
        tags.map((tag) => `export const i_${tag} = base.clone({ tag: ${JSON.stringify(tag)} });`).join("\n") +
        "\n",
    );
    const env = { ...process.env, DOCKER_CONFIG: path.join(work, "no-docker-config") };
    const planRuns = Math.max(10, Math.min(RUNS, 10));
    for (let i = 0; i < planRuns; i++) {
      plan.push(
        await time(async () => {
          const { stdout } = await run(process.execPath, [cliMain, "plan", spec, "--json", "--project", work], { env, maxBuffer: 16 * 1024 * 1024 });
          const skipped = stdout.match(/"action":\s*"skip"/g)?.length ?? 0;
          if (skipped !== tags.length) throw new Error(`kiln plan found ${skipped} of ${tags.length} images: ${stdout.slice(0, 300)}`);
        }),
      );
      skopeo100.push(
        await time(async () => {
          for (const tag of tags) await run("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${registry.host}/bench/app:${tag}`]);
        }),
      );
    }
  }

  const results = {
    runs: RUNS,
    registry: "distribution 2.8.2 (docker-registry), open, loopback",
    existenceWarmMs: median(inProcess),
    platformCheckFreshClientMs: median(inProcessPlatforms),
    skopeoInspectRawMs: median(skopeo),
    ratioExistenceVsSkopeo: median(inProcess) / median(skopeo),
    ratioPlatformCheckVsSkopeo: median(inProcessPlatforms) / median(skopeo),
    ...(cliAvailable
      ? { kilnCheckMs: median(cli), nodeBareMs: median(nodeBare), ratioKilnCheckVsNode: median(cli) / median(nodeBare) }
      : { kilnCheck: "CLI not built (packages/core/dist/cli/main.js missing)" }),
    ...(plan.length ? { plan100Ms: median(plan), skopeo100SequentialMs: median(skopeo100), ratioPlanVsSkopeo100: median(plan) / median(skopeo100) } : {}),
  };
  if (asJson) console.log(JSON.stringify(results, null, 2));
  else {
    const f = (n) => `${n.toFixed(2)} ms`;
    console.log(`Registry checks — medians of ${RUNS} runs, local registry ${registry.host}`);
    console.log(`  existence check, warm process (HEAD)      ${f(results.existenceWarmMs)}`);
    console.log(`  platform check, fresh client (HEAD+GET)   ${f(results.platformCheckFreshClientMs)}`);
    console.log(`  skopeo inspect --raw (process)            ${f(results.skopeoInspectRawMs)}`);
    console.log(`  ratio existence / skopeo                  ${results.ratioExistenceVsSkopeo.toFixed(3)}×  (target ≤ 0.5×)`);
    console.log(`  ratio platform check / skopeo             ${results.ratioPlatformCheckVsSkopeo.toFixed(3)}×`);
    if (cliAvailable) {
      console.log(`  kiln check (whole command)                ${f(results.kilnCheckMs)}`);
      console.log(`  node -e 0                                 ${f(results.nodeBareMs)}`);
      console.log(`  ratio kiln check / node -e 0              ${results.ratioKilnCheckVsNode.toFixed(2)}×  (target ≤ 2.5×)`);
    } else console.log(`  kiln check: ${results.kilnCheck}`);
    if (plan.length) {
      console.log(`  kiln plan, 100 images (whole command)     ${f(results.plan100Ms)}  (${plan.length} runs)`);
      console.log(`  100 sequential skopeo inspect --raw       ${f(results.skopeo100SequentialMs)}`);
      console.log(`  ratio kiln plan / 100 skopeo              ${results.ratioPlanVsSkopeo100.toFixed(3)}×  (target ≤ 0.1×)`);
    }
  }
} finally {
  await registry.stop();
}
