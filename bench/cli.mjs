#!/usr/bin/env node
/**
 * CLI and discovery benchmark (run after `pnpm --filter @kiln/core build`):
 *  1. `kiln --help` cold start vs `node -e 0`, medians of N runs each, interleaved (target ratio ≤ 3);
 *  2. discoverPlugins over a generated project with 200 dependencies, 20 of them plugins (target ≤ 50 ms);
 *  3. `kiln plan` over a spec exporting 100 images (50 present) against a local docker-registry,
 *     next to 100 sequential `skopeo inspect --raw --tls-verify=false` calls on the same images.
 * Prints a Markdown table; numbers are measured in this run, on this machine.
 */
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { startRegistry } from "./lib/services.mjs";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const CORE_DIST = join(ROOT, "packages/core/dist");
const BIN = join(CORE_DIST, "cli/main.js");
const RUNS = Number(process.env.BENCH_RUNS ?? 15);
const work = mkdtempSync(join(tmpdir(), "kiln-bench-cli-"));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ms = (n) => `${n.toFixed(1)} ms`;

function timeProcess(args, options = {}) {
  const start = process.hrtime.bigint();
  const result = spawnSync(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], ...options });
  const elapsed = Number(process.hrtime.bigint() - start) / 1e6;
  return { elapsed, status: result.status, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
}

// ---- 1. cold start -------------------------------------------------------------------------------
function benchColdStart() {
  const node = [];
  const help = [];
  timeProcess(["-e", "0"]);
  timeProcess([BIN, "--help"]); // warm the OS file cache once; each run is still a fresh process
  for (let i = 0; i < RUNS; i++) {
    node.push(timeProcess(["-e", "0"]).elapsed);
    const run = timeProcess([BIN, "--help"]);
    if (run.status !== 0) throw new Error(`kiln --help failed: ${run.stderr}`);
    help.push(run.elapsed);
  }
  return { node: median(node), help: median(help), ratio: median(help) / median(node) };
}

// ---- 2. discovery --------------------------------------------------------------------------------
async function benchDiscovery() {
  const project = join(work, "discovery-project");
  const deps = {};
  for (let i = 0; i < 200; i++) {
    const name = i % 3 === 0 ? `@scope${i % 7}/dep-${i}` : `dep-${i}`;
    deps[name] = "1.0.0";
    const dir = join(project, "node_modules", name);
    mkdirSync(join(dir, "lib"), { recursive: true });
    const pkg = { name, version: "1.0.0", main: "./lib/index.js" };
    if (i % 10 === 0) {
      pkg.kiln = {
        apiVersion: 1,
        imageBuilders: { [`builder_${i}`]: "./lib/index.js#Builder" },
        imageCheckers: { [`checker_${i}`]: "./lib/index.js#Checker" },
      };
      // half of the plugins hide package.json behind "exports" (exercises the node_modules walk)
      if (i % 20 === 0) pkg.exports = { ".": "./lib/index.js" };
    }
    writeFileSync(join(dir, "package.json"), JSON.stringify(pkg));
    writeFileSync(
      join(dir, "lib/index.js"),
      "export class Builder { async buildImage(i) { return { uri: i.uri }; } }\nexport class Checker { static async imageExists() { return null; } }\n",
    );
  }
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "bench-project", version: "1.0.0", dependencies: deps }));
  // A fresh process per measurement: the first discovery of a process is what `kiln` pays.
  const script = `
    const t0 = performance.now();
    const { discoverPlugins } = await import(${JSON.stringify(pathToFileURL(join(CORE_DIST, "index.js")).href)});
    const t1 = performance.now();
    const found = discoverPlugins(${JSON.stringify(project)});
    const t2 = performance.now();
    const again = discoverPlugins(${JSON.stringify(project)});
    const t3 = performance.now();
    console.log(JSON.stringify({ load: t1 - t0, first: t2 - t1, second: t3 - t2, builders: found.imageBuilders.length, checkers: found.imageCheckers.length, problems: found.problems.length }));
  `;
  const samples = [];
  for (let i = 0; i < Math.max(10, Math.floor(RUNS / 2)); i++) {
    const run = timeProcess(["--input-type=module", "-e", script]);
    if (run.status !== 0) throw new Error(run.stderr);
    samples.push(JSON.parse(run.stdout));
  }
  const s = samples[0];
  if (s.builders !== 20 || s.checkers !== 20 || s.problems !== 0) throw new Error(`discovery found ${JSON.stringify(s)}`);
  return { first: median(samples.map((x) => x.first)), second: median(samples.map((x) => x.second)), load: median(samples.map((x) => x.load)) };
}

// ---- 3. plan vs skopeo -----------------------------------------------------------------------------
const sha = (b) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
async function pushTiny(url, repository, tag) {
  const blob = async (data) => {
    const start = await fetch(`${url}/v2/${repository}/blobs/uploads/`, { method: "POST" });
    const loc = new URL(start.headers.get("location"), url);
    loc.searchParams.set("digest", sha(data));
    const put = await fetch(loc, { method: "PUT", body: data });
    if (!put.ok) throw new Error(`upload ${put.status}`);
    return { digest: sha(data), size: data.length };
  };
  const layer = await blob(randomBytes(256));
  const config = await blob(
    Buffer.from(JSON.stringify({ os: "linux", architecture: "amd64", config: {}, rootfs: { type: "layers", diff_ids: [layer.digest] } })),
  );
  const mt = "application/vnd.oci.image.manifest.v1+json";
  const body = JSON.stringify({
    schemaVersion: 2,
    mediaType: mt,
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
    layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", ...layer }],
  });
  const put = await fetch(`${url}/v2/${repository}/manifests/${tag}`, { method: "PUT", body, headers: { "content-type": mt } });
  if (!put.ok) throw new Error(`manifest ${put.status}`);
}

async function benchPlan() {
  const registry = await startRegistry(join(work, "registry"));
  try {
    const spec = join(work, "plan-spec.mjs");
    const core = pathToFileURL(join(CORE_DIST, "index.js")).href;
    writeFileSync(
      spec,
      `import { Image } from ${JSON.stringify(core)};\n` +
        Array.from(
          { length: 100 },
          (_, i) =>
            `export const img${String(i).padStart(3, "0")} = Image.fromBase("kiln-test/busybox:1.35", { registry: ${JSON.stringify(registry.host)}, name: "bench/img${i}" }).withEnvVars({ I: "${i}" });`,
        ).join("\n"),
    );
    const { Image } = await import(core);
    const mod = await import(pathToFileURL(spec).href);
    const images = Object.values(mod).filter((v) => v instanceof Image);
    for (const [i, image] of images.entries())
      if (i % 2 === 0) await pushTiny(registry.url, image.uri.slice(registry.host.length + 1, image.uri.lastIndexOf(":")), image.tag);

    const planRuns = [];
    let rows = [];
    for (let i = 0; i < 5; i++) {
      const run = timeProcess([BIN, "plan", spec, "--json"], { cwd: work });
      if (run.status !== 0) throw new Error(`kiln plan exited ${run.status}: ${run.stderr}`);
      rows = run.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
      planRuns.push(run.elapsed);
    }
    const present = rows.filter((r) => r.exists === true).length;
    if (rows.length !== 100 || present !== 50) throw new Error(`plan saw ${rows.length} images, ${present} present`);

    const skopeoRuns = [];
    for (let i = 0; i < 3; i++) {
      const start = process.hrtime.bigint();
      let found = 0;
      for (const image of images) {
        const r = spawnSync("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${image.uri}`], { stdio: "ignore" });
        if (r.status === 0) found++;
      }
      skopeoRuns.push(Number(process.hrtime.bigint() - start) / 1e6);
      if (found !== 50) throw new Error(`skopeo found ${found}`);
    }
    return { plan: median(planRuns), skopeo: median(skopeoRuns) };
  } finally {
    registry.child.kill();
  }
}

try {
  const cold = benchColdStart();
  const discovery = await benchDiscovery();
  const plan = await benchPlan();
  const lines = [
    `| measurement | result | target |`,
    `|---|---|---|`,
    `| \`node -e 0\` (median of ${RUNS}) | ${ms(cold.node)} | baseline |`,
    `| \`kiln --help\` (median of ${RUNS}) | ${ms(cold.help)} | |`,
    `| cold-start ratio kiln/node | **${cold.ratio.toFixed(2)}** | ≤ 3 |`,
    `| discoverPlugins, 200 deps / 20 plugins, first call in a fresh process (median) | **${ms(discovery.first)}** | ≤ 50 ms |`,
    `| discoverPlugins, same project, second call (median) | ${ms(discovery.second)} | |`,
    `| importing @kiln/core before discovery (median) | ${ms(discovery.load)} | |`,
    `| \`kiln plan\`, 100 images (50 present), whole process (median of 5) | **${ms(plan.plan)}** | |`,
    `| 100 sequential \`skopeo inspect --raw\` (median of 3) | ${ms(plan.skopeo)} | |`,
    `| speed-up plan vs skopeo | **${(plan.skopeo / plan.plan).toFixed(1)}×** | |`,
  ];
  console.log(lines.join("\n"));
  const failed = cold.ratio > 3 || discovery.first > 50;
  if (failed) {
    console.error("bench/cli: a target was missed");
    process.exitCode = 1;
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
