// On the machine's real Docker Engine (BuildKit): a 100 MB context of random data served through the
// build session (`remote=client-session`, filesync DiffCopy) while busy threads load the CPU — the
// condition under which the daemon once read a wrong gRPC message length ("received message larger
// than max"). The files in the built image must be the sources, byte for byte (sha256 inside vs out).
import { createHash, randomBytes } from "node:crypto";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { Image } from "@kiln/core";
import { DockerCleanup, ensureBusyboxImage, runInImage, uniqueName } from "@kiln/test-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DockerImageBuilder } from "../src/builder.js";
import { tempTree } from "./helpers.js";

const FILES = 20;
const FILE_BYTES = 5 * 1024 * 1024;

let busybox: string;
const cleanup = new DockerCleanup();
const dirs: string[] = [];

beforeAll(async () => {
  busybox = await ensureBusyboxImage();
});

afterAll(async () => {
  await cleanup.run();
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** Busy threads for the duration of `work` (the machine is shared: two, stopped right after). */
async function underCpuLoad<T>(work: () => Promise<T>): Promise<T> {
  const workers = Array.from({ length: 2 }, () => new Worker("const end = Date.now() + 120000; while (Date.now() < end);", { eval: true }));
  try {
    return await work();
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

describe("BuildKit session context under CPU load", () => {
  it(`${FILES} files of ${FILE_BYTES >> 20} MiB random data reach the image byte-exact`, async () => {
    const ctx = await tempTree({}, "kiln-session-framing-");
    const elsewhere = await tempTree({ "build.Dockerfile": `FROM ${busybox}\nCOPY . /data\n` }, "kiln-session-framing-df-");
    dirs.push(ctx, elsewhere);
    const expected: string[] = [];
    await mkdir(join(ctx, "blobs"), { recursive: true });
    for (let i = 0; i < FILES; i++) {
      const data = randomBytes(FILE_BYTES);
      await writeFile(join(ctx, "blobs", `blob-${i}.bin`), data);
      expected.push(`${createHash("sha256").update(data).digest("hex")}  blob-${i}.bin`);
    }
    // The Dockerfile outside the context: the context goes through the session, not a tar upload.
    const image = Image.fromDockerfile(join(elsewhere, "build.Dockerfile"), { context: ctx, name: uniqueName("kiln-framing") });
    const { uri } = await underCpuLoad(() => new DockerImageBuilder({ buildkit: true, noCache: true, incremental: false }).buildImage(image, {}));
    cleanup.image(uri!);
    const inside = (await runInImage(uri!, ["sh", "-c", "cd /data/blobs && sha256sum blob-*.bin"])).trim().split("\n");
    expect(inside.sort()).toEqual(expected.sort());
  }, 90_000);
});
