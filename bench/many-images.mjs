#!/usr/bin/env node
/**
 * Many images in one run (issue 17). On the machine's Docker Engine, pushing to a real local registry
 * (distribution 2.8) started here, runs interleaved, RUNS runs each:
 *
 *   A. `kiln build spec.mjs --builder docker` of 20 small independent images (each `FROM busybox`, one
 *      RUN, one ENV; new tags every run, so all 20 are built and pushed) at the default concurrency
 *   B. the same 20 built one by one in the same process: `kiln build spec.mjs --concurrency 1`
 *                                                                                    target A/B ≤ 0.5×
 *   (with --script, also once: 20 separate `kiln build spec.mjs#imgNN` processes in a row — a script)
 *
 * It also prints the CPU the work took (dockerd with its children, containerd, the registry, kiln; on
 * Linux) and the floor that sets: one by one keeps U cores busy, so on N cores the concurrent run cannot
 * take less than U/N of the one-by-one time unless concurrent builds share work.
 *
 * Options: --runs N (default 2), --script, --concurrency N (arm A at N instead of the default), --json.
 * Needs: `pnpm --filter @kiln/core build && pnpm --filter @kiln/docker build`; dockerd running;
 * /bin/busybox (busybox-static); /usr/bin/docker-registry. Usage: node bench/many-images.mjs [--runs N] [--script] [--json]
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { cores, startCpuAccount } from "./lib/cpuAccount.mjs";
import { ensureBusyboxImage, startRegistry } from "./lib/services.mjs";

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const RUNS = Math.max(1, Number(args[args.indexOf("--runs") + 1]) || 2);
const withScript = args.includes("--script");
// Arm A at another concurrency than the CLI's default (to compare settings): --concurrency N.
const concurrencyArgs = args.includes("--concurrency") ? ["--concurrency", String(Number(args[args.indexOf("--concurrency") + 1]))] : [];
const asJson = args.includes("--json");
const COUNT = 20;
const cliMain = path.join(root, "packages/core/dist/cli/main.js");
for (const f of [cliMain, path.join(root, "packages/docker/dist/index.js")]) {
  if (!existsSync(f)) {
    console.error(`missing ${f}: run \`pnpm --filter @kiln/core build && pnpm --filter @kiln/docker build\` first`);
    process.exit(2);
  }
}
const work = path.join("/var/tmp", `kiln-bench-many-${process.pid}`);
const BUSYBOX = "kiln-bench/busybox:1";
const log = (...m) => !asJson && console.error(...m);

/** A project linking @kiln/core and @kiln/docker, with a spec of COUNT images whose tags change with KILN_BENCH_NONCE. */
function makeProject(registryHost) {
  mkdirSync(path.join(work, "project"), { recursive: true });
  const project = realpathSync(path.join(work, "project"));
  writeFileSync(
    path.join(project, "package.json"),
    JSON.stringify({ name: "many-bench", private: true, type: "module", dependencies: { "@kiln/core": "*", "@kiln/docker": "*" } }),
  );
  mkdirSync(path.join(project, "node_modules/@kiln"), { recursive: true });
  symlinkSync(path.join(root, "packages/core"), path.join(project, "node_modules/@kiln/core"));
  symlinkSync(path.join(root, "packages/docker"), path.join(project, "node_modules/@kiln/docker"));
  const lines = [`import { Image } from "@kiln/core";`, `const nonce = process.env.KILN_BENCH_NONCE;`];
  for (let i = 1; i <= COUNT; i++) {
    const id = String(i).padStart(2, "0");
    lines.push(
      `export const img${id} = Image.fromBase(${JSON.stringify(BUSYBOX)}, { registry: ${JSON.stringify(registryHost)}, name: "bench-many-${id}" }).withCommands(\`echo \${nonce}-${id} > /id\`).withEnvVars({ IMAGE: "${id}" });`,
    );
  }
  writeFileSync(path.join(project, "spec.mjs"), `${lines.join("\n")}\n`);
  return project;
}

async function kiln(project, cliArgs, nonce) {
  const env = { ...process.env, CI: "1", KILN_BENCH_NONCE: nonce, KILN_LOCK_DIR: path.join(work, "locks") };
  const account = startCpuAccount();
  const { stdout } = await run(process.execPath, [cliMain, ...cliArgs], { cwd: project, env, maxBuffer: 16 << 20 });
  const cpu = account.stop();
  return { ms: cpu.wallMs, cpu, uris: stdout.trim().split("\n").filter(Boolean) };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

async function main() {
  mkdirSync(work, { recursive: true });
  await ensureBusyboxImage(BUSYBOX, work);
  const registry = await startRegistry(path.join(work, "registry"));
  // Interrupted: the registry must not outlive the benchmark.
  for (const signal of ["SIGINT", "SIGTERM"])
    process.once(signal, () => {
      registry.child.kill();
      process.exit(130);
    });
  const project = makeProject(registry.host);
  const built = new Set();
  const concurrent = [];
  const oneByOne = [];
  const concurrentCpu = [];
  const oneByOneCpu = [];
  let script;
  try {
    const check = (r) => {
      if (r.uris.length !== COUNT) throw new Error(`expected ${COUNT} URIs, got ${r.uris.length}`);
      for (const uri of r.uris) built.add(uri);
    };
    // Warm-up (base image layers into the registry, node/module caches), not measured.
    check(await kiln(project, ["build", "spec.mjs", "--builder", "docker"], randomBytes(6).toString("hex")));
    for (let i = 0; i < RUNS; i++) {
      const a = await kiln(project, ["build", "spec.mjs", "--builder", "docker", ...concurrencyArgs], randomBytes(6).toString("hex"));
      check(a);
      concurrent.push(a.ms);
      concurrentCpu.push(a.cpu);
      log(`run ${i + 1}: ${concurrencyArgs.length ? concurrencyArgs.join(" ") : "default concurrency"} ${(a.ms / 1000).toFixed(1)} s`);
      const b = await kiln(project, ["build", "spec.mjs", "--builder", "docker", "--concurrency", "1"], randomBytes(6).toString("hex"));
      check(b);
      oneByOne.push(b.ms);
      oneByOneCpu.push(b.cpu);
      log(`run ${i + 1}: one by one (--concurrency 1) ${(b.ms / 1000).toFixed(1)} s`);
    }
    if (withScript) {
      // A script building them one by one, one process per image.
      const nonce = randomBytes(6).toString("hex");
      const start = process.hrtime.bigint();
      for (let i = 1; i <= COUNT; i++) {
        const r = await kiln(project, ["build", `spec.mjs#img${String(i).padStart(2, "0")}`, "--builder", "docker"], nonce);
        for (const uri of r.uris) built.add(uri);
      }
      script = Number(process.hrtime.bigint() - start) / 1e6;
      log(`script of ${COUNT} kiln build processes: ${(script / 1000).toFixed(1)} s`);
    }
  } finally {
    registry.child.kill();
    await run("docker", ["image", "rm", "-f", ...built]).catch(() => undefined);
    const stages = await run("docker", ["image", "ls", "--filter", "label=dev.kiln.stage=1", "--format", "{{.Repository}}:{{.Tag}}"]).then(
      (o) => o.stdout.split("\n").filter((l) => l.includes("bench-many-")),
      () => [],
    );
    if (stages.length) await run("docker", ["image", "rm", "-f", ...stages]).catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  }
  // The floor on this machine: one by one keeps U cores busy on average, so with the same work per
  // image, N cores cannot run the set faster than U/N of the one-by-one time (counted over the
  // processes doing the work, bench/lib/cpuAccount.mjs; other load slows both arms but is not counted).
  const sum = (xs, key) => xs.reduce((n, x) => n + (x[key] ?? Number.NaN), 0);
  const busyCoresOneByOne = sum(oneByOneCpu, "busyCpuS") / (sum(oneByOneCpu, "wallMs") / 1000);
  const cpu = Number.isFinite(busyCoresOneByOne)
    ? {
        cores: cores(),
        busyCoresOneByOne,
        busyCoresConcurrent: sum(concurrentCpu, "busyCpuS") / (sum(concurrentCpu, "wallMs") / 1000),
        cpuSPerImageOneByOne: sum(oneByOneCpu, "busyCpuS") / (RUNS * COUNT),
        cpuSPerImageConcurrent: sum(concurrentCpu, "busyCpuS") / (RUNS * COUNT),
        dockerdShareOneByOne: sum(oneByOneCpu, "dockerdCpuS") / sum(oneByOneCpu, "busyCpuS"),
        floorRatio: busyCoresOneByOne / cores(),
      }
    : undefined;
  const result = {
    images: COUNT,
    runs: RUNS,
    concurrentMs: concurrent,
    oneByOneMs: oneByOne,
    scriptMs: script,
    ratio: median(concurrent) / median(oneByOne),
    ...(cpu ? { cpu } : {}),
    ...(script !== undefined ? { ratioVsScript: median(concurrent) / script } : {}),
  };
  if (asJson) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  const s = (ms) => `${(ms / 1000).toFixed(1)} s`;
  console.log(`${COUNT} small images, docker builder, pushed to a loopback registry; ${RUNS} runs (median; spread)`);
  const armA = concurrencyArgs.length ? `--concurrency ${concurrencyArgs[1]}:` : "default concurrency:";
  console.log(`  kiln build, ${armA.padEnd(22)} ${s(median(concurrent))}  (${concurrent.map(s).join(", ")})`);
  console.log(`  kiln build --concurrency 1:        ${s(median(oneByOne))}  (${oneByOne.map(s).join(", ")})`);
  if (script !== undefined) console.log(`  ${COUNT} kiln build processes in a row: ${s(script)}  (concurrent / script: ${result.ratioVsScript.toFixed(2)}×)`);
  console.log(`  ratio concurrent / one by one: ${result.ratio.toFixed(2)}×  (target ≤ 0.5×)`);
  if (cpu) {
    console.log(
      `  CPU: one by one kept ${cpu.busyCoresOneByOne.toFixed(2)} of ${cpu.cores} cores busy (${cpu.cpuSPerImageOneByOne.toFixed(2)} CPU-s per image, ${(cpu.dockerdShareOneByOne * 100).toFixed(0)}% in dockerd and its children); concurrent ${cpu.busyCoresConcurrent.toFixed(2)} cores, ${cpu.cpuSPerImageConcurrent.toFixed(2)} CPU-s per image`,
    );
    console.log(`  floor on this machine (busy cores one by one / cores): ${cpu.floorRatio.toFixed(2)}×`);
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
