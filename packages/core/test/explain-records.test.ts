/**
 * "Why did this rebuild?": build() records the explain inputs of every tag it builds or finds under
 * <project>/.kiln/explain (explainRecord.ts), and before building an image whose name had another tag
 * it emits `build.reason` naming what changed (explainDiff.ts). The builder here is a stand-in (the
 * records and reasons are the engine's; no image content matters); the records are real files.
 */
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ImageBuild } from "../src/builder.js";
import { EXPLAIN_RECORDS_ENV } from "../src/buildReason.js";
import { explainTag } from "../src/hash.js";
import { build } from "../src/engine.js";
import type { BuildEvent } from "../src/events.js";
import { diffExplainRecords, summarizeExplainDiff } from "../src/explainDiff.js";
import { EXPLAIN_RECORDS_KEPT, explainDirectory, readExplainRecords, type ExplainRecord } from "../src/explainRecord.js";
import { Image } from "../src/image.js";
import { attachExplainRecord, explainArtifactTag, readAttachedExplainRecord } from "../src/explainArtifact.js";
import { pushTestImage, startRegistry, type TestRegistry } from "../../test-utils/src/registry.js";

let root: string;
const saved = { records: process.env[EXPLAIN_RECORDS_ENV], lockDir: process.env.KILN_LOCK_DIR };

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "kiln-explain-records-"));
  // The shared test config turns records off; here only the project's (the registry copy: below).
  process.env[EXPLAIN_RECORDS_ENV] = "local";
  process.env.KILN_LOCK_DIR = join(root, "locks");
});
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
  if (saved.records === undefined) delete process.env[EXPLAIN_RECORDS_ENV];
  else process.env[EXPLAIN_RECORDS_ENV] = saved.records;
  if (saved.lockDir === undefined) delete process.env.KILN_LOCK_DIR;
  else process.env.KILN_LOCK_DIR = saved.lockDir;
});

let counter = 0;
/** A fresh project (package.json) with a source folder. */
function project(files: Record<string, string> = { "app.py": "print(1)\n", "util.py": "X = 1\n" }): { dir: string; src: string } {
  const dir = join(root, `p${++counter}`);
  const src = join(dir, "src");
  mkdirSync(src, { recursive: true });
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: `p${counter}`, private: true }));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(src, name), text);
  return { dir, src };
}

/** A builder that "builds" instantly; with `present`, its checker finds whatever it built. */
function standIn() {
  const built = new Set<string>();
  return {
    built,
    getCheckers: () => [{ imageExists: async (repository: string, tag: string) => (built.has(`${repository}:${tag}`) ? `${repository}:${tag}` : null) }],
    buildImage: async (image: Image): Promise<ImageBuild> => {
      built.add(image.uri);
      return { uri: image.uri, digest: `sha256:${"ab".repeat(32)}` };
    },
  };
}

async function buildWithEvents(image: Image, dir: string, builder = standIn()) {
  const events: BuildEvent[] = [];
  const result = await build(image, { builder, projectDir: dir, onEvent: (e) => events.push(e) });
  return { result, events, reason: events.find((e) => e.type === "build.reason") as Extract<BuildEvent, { type: "build.reason" }> | undefined };
}

const records = (dir: string, name: string): ExplainRecord[] => readExplainRecords(dir, name);

describe("explain records under .kiln/explain", () => {
  it("a changed file: the next build names it, and so does the diff of the records", async () => {
    const { dir, src } = project();
    const image = () => Image.fromBase("busybox:1.36", { registry: "localhost:5999", name: "why/files" }).withSourceFolder(src, "/app");
    const first = await buildWithEvents(image(), dir);
    expect(first.reason).toBeUndefined(); // no earlier tag of why/files
    expect(records(dir, "why/files").map((r) => r.tag)).toEqual([image().tag]);

    writeFileSync(join(src, "util.py"), "X = 2\n");
    const second = await buildWithEvents(image(), dir);
    expect(second.result.outcome).toBe("built");
    expect(second.reason?.previousTag).toBe(first.result.uri!.split(":").pop());
    expect(second.reason?.reason).toContain("file changed: layers[0] util.py");
    expect(second.reason?.reason).not.toContain("app.py");
    // The reason comes before the build starts.
    const types = second.events.map((e) => e.type);
    expect(types.indexOf("build.reason")).toBeLessThan(types.indexOf("build.start"));

    const [now, before] = records(dir, "why/files");
    const diff = diffExplainRecords(before!, now!);
    expect(diff.files).toEqual({ added: [], removed: [], changed: ["layers[0] util.py"] });
    expect(diff.layers).toEqual([]); // the folder layer changed only by its files: told by the file

    writeFileSync(join(src, "new.py"), "Y = 1\n");
    rmSync(join(src, "app.py"));
    const third = await buildWithEvents(image(), dir);
    expect(third.reason?.reason).toContain("file added: layers[0] new.py");
    expect(third.reason?.reason).toContain("file removed: layers[0] app.py");
  });

  it("a changed pip package names the layer; changed platforms and base are named", async () => {
    const { dir } = project();
    const pip = (version: string) =>
      Image.fromDebianBase({ registry: "localhost:5999", name: "why/pip" }).withPipPackages(`six==${version}`).withEnvVars({ A: "1" });
    await buildWithEvents(pip("1.16.0"), dir);
    const changed = await buildWithEvents(pip("1.17.0"), dir);
    expect(changed.reason?.reason).toBe(`since ${pip("1.16.0").tag}: layers[0] pipPackages changed`);
    const [now, before] = records(dir, "why/pip");
    expect(diffExplainRecords(before!, now!).layers).toEqual([
      expect.objectContaining({
        label: "layers[0] pipPackages",
        before: expect.stringContaining("six==1.16.0"),
        after: expect.stringContaining("six==1.17.0"),
      }),
    ]);

    const twoPlatforms = await buildWithEvents(pip("1.17.0").clone({ platform: ["linux/amd64", "linux/arm64"] }), dir);
    expect(twoPlatforms.reason?.reason).toContain("platforms linux/amd64 → linux/amd64,linux/arm64");
    const [withArm] = records(dir, "why/pip");
    expect(withArm!.platforms).toEqual(["linux/amd64", "linux/arm64"]);

    const otherBase = await buildWithEvents(
      Image.fromDebianBase({ registry: "localhost:5999", name: "why/pip", baseImage: "python:3.11-slim-trixie", platform: ["linux/amd64", "linux/arm64"] })
        .withPipPackages("six==1.17.0")
        .withEnvVars({ A: "1" }),
      dir,
    );
    expect(otherBase.reason?.reason).toContain("base changed");
    expect(otherBase.reason?.reason).toContain("python:3.11-slim-trixie");
  });

  it("fromDockerfile build args: records keep each key and the sha256 of its value, never the value; a changed value is still named", async () => {
    const { dir } = project();
    writeFileSync(join(dir, "Dockerfile"), "FROM busybox:1.36\nARG NPM_TOKEN\n");
    const value = (n: number) => `not-for-records-${n}-${counter}`;
    const image = (n: number) =>
      Image.fromDockerfile(join(dir, "Dockerfile"), { context: dir, buildArgs: { NPM_TOKEN: value(n) }, registry: "localhost:5999", name: "why/args" });
    await buildWithEvents(image(1), dir);
    const changed = await buildWithEvents(image(2), dir);
    expect(changed.reason?.reason).toContain("base changed");
    const files = readdirSync(join(explainDirectory(dir), encodeURIComponent("why/args")));
    const onDisk = files.map((f) => readFileSync(join(explainDirectory(dir), encodeURIComponent("why/args"), f), "utf8")).join("\n");
    expect(files).toHaveLength(2);
    expect(onDisk).not.toContain(value(1));
    expect(onDisk).not.toContain(value(2));
    const [now, before] = records(dir, "why/args");
    const sha = (v: string) => `sha256:${createHash("sha256").update(v).digest("hex")}`;
    expect(before!.inputs.find(([kind]) => kind === "base")?.[2]).toContain(`buildArgs={"NPM_TOKEN":"${sha(value(1))}"}`);
    const diff = diffExplainRecords(before!, now!);
    expect(JSON.stringify(diff)).toContain(sha(value(2)));
    expect(JSON.stringify(diff)).not.toContain(value(2));
    // What `kiln explain` prints comes from the same inputs.
    expect(JSON.stringify(explainTag(image(2)))).not.toContain(value(2));
  });

  it("a found image is recorded too; building the last recorded tag again gives no reason", async () => {
    const { dir, src } = project();
    const builder = standIn();
    const image = Image.fromBase("busybox:1.36", { registry: "localhost:5999", name: "why/found" }).withSourceFolder(src, "/app");
    await buildWithEvents(image, dir, builder);
    rmSync(explainDirectory(dir), { recursive: true, force: true });
    const found = await buildWithEvents(image, dir, builder);
    expect(found.result.outcome).toBe("found");
    expect(records(dir, "why/found").map((r) => [r.tag, r.outcome])).toEqual([[image.tag, "found"]]);
    const forcedEvents: BuildEvent[] = [];
    const forced = await build(image, { builder, projectDir: dir, force: true, onEvent: (e) => forcedEvents.push(e) });
    expect(forced.outcome).toBe("built");
    expect(forcedEvents.map((e) => e.type)).toContain("build.start");
    expect(forcedEvents.map((e) => e.type)).not.toContain("build.reason"); // its only record is this very tag
    // An explicit tag found in the registry needed no hashing of the sources: it is not recorded (which would hash them).
    const named = image.clone({ tag: "v1" });
    expect((await buildWithEvents(named, dir, builder)).result.outcome).toBe("built");
    rmSync(explainDirectory(dir), { recursive: true, force: true });
    expect((await buildWithEvents(named, dir, builder)).result.outcome).toBe("found");
    expect(records(dir, "why/found")).toEqual([]);
  });

  it("the records are compact, written whole, and only the newest per name are kept", async () => {
    const { dir, src } = project({ "app.py": "print(1)\n", "run.sh": "#!/bin/sh\n" });
    const image = (n: number) =>
      Image.fromBase("busybox:1.36", { registry: "localhost:5999", name: "team/why-keep" })
        .withSourceFolder(src, "/app")
        .withEnvVars({ N: String(n) });
    for (let n = 0; n < EXPLAIN_RECORDS_KEPT + 2; n++) await buildWithEvents(image(n), dir);
    const folder = join(explainDirectory(dir), encodeURIComponent("team/why-keep"));
    const files = readdirSync(folder);
    expect(files.length).toBe(EXPLAIN_RECORDS_KEPT);
    expect(files.every((f) => /^[0-9a-f]{32}\.json$/.test(f))).toBe(true); // no temporary file left behind
    expect(files).not.toContain(`${image(0).tag}.json`);
    expect(files).toContain(`${image(EXPLAIN_RECORDS_KEPT + 1).tag}.json`);

    const record = JSON.parse(readFileSync(join(folder, `${image(3).tag}.json`), "utf8")) as ExplainRecord;
    expect(record).toMatchObject({
      v: 1,
      name: "team/why-keep",
      tag: image(3).tag,
      outcome: "built",
      platforms: ["linux/amd64"],
      base: { ref: "busybox:1.36" },
    });
    // Per-file digests, 16 hex each (the first 16 of the file's sha256, as `kiln explain` lists it).
    const listed = image(3)
      .explain()
      .inputs.find((i) => i.label === "layers[0] app.py")!.value;
    expect(record.files["layers[0]"]!["app.py"]).toBe(listed.slice("sha256:".length, "sha256:".length + 16));
    expect(Object.keys(record.files["layers[0]"]!).sort()).toEqual(["app.py", "run.sh"]);
    expect(record.inputs.map(([kind]) => kind)).toEqual(["recipe", "base", "platform", "installer", "layer", "layer"]);
    expect(statSync(join(folder, `${image(3).tag}.json`)).size).toBeLessThan(2_000);
  });

  it("KILN_EXPLAIN_RECORDS=0 turns recording off; an unwritable project is a warning, never a failure", async () => {
    const { dir, src } = project();
    const image = Image.fromBase("busybox:1.36", { registry: "localhost:5999", name: "why/off" }).withSourceFolder(src, "/app");
    process.env[EXPLAIN_RECORDS_ENV] = "0";
    try {
      await buildWithEvents(image, dir);
    } finally {
      process.env[EXPLAIN_RECORDS_ENV] = "local";
    }
    expect(records(dir, "why/off")).toEqual([]);
    writeFileSync(join(dir, ".kiln"), "a file where the directory would go");
    const { result, events } = await buildWithEvents(image.withEnvVars({ B: "1" }), dir);
    expect(result.outcome).toBe("built");
    expect(events.some((e) => e.type === "warning" && e.message.includes("explain record not written"))).toBe(true);
  });

  it("summarizes every kind of change in one line", () => {
    const base: ExplainRecord = {
      v: 1,
      name: "n",
      tag: "a".repeat(32),
      uri: "x",
      outcome: "built",
      at: "2026-01-01T00:00:00.000Z",
      recipe: "kiln-tag-v3",
      platforms: ["linux/amd64"],
      base: { ref: "python:3.11" },
      inputs: [
        ["recipe", "recipe", '"kiln-tag-v3"'],
        ["base", "base", 'image="python:3.11"'],
        ["installer", "installer", 'installer="uv"'],
      ],
      files: {},
    };
    const after: ExplainRecord = {
      ...base,
      tag: "b".repeat(32),
      recipe: "kiln-tag-v4",
      base: { ref: "python:3.11", digest: `sha256:${"c".repeat(64)}` },
      inputs: [
        ["recipe", "recipe", '"kiln-tag-v4"'],
        ["base", "base", `image="python:3.11" digest="sha256:${"c".repeat(64)}"`],
        ["installer", "installer", 'installer="pip"'],
      ],
    };
    const line = summarizeExplainDiff(diffExplainRecords(base, after));
    expect(line).toContain("base changed");
    expect(line).toContain("installer changed");
    expect(line).toContain("Kiln's tag recipe kiln-tag-v3 → kiln-tag-v4");
    expect(summarizeExplainDiff(diffExplainRecords(base, base))).toBe(`no input changed since ${base.tag}`);
  });
});

describe("explain records next to the image (docker-registry 2.8)", () => {
  let registry: TestRegistry;
  beforeAll(async () => {
    registry = await startRegistry();
  }, 120_000);
  afterAll(async () => {
    await registry?.stop();
  });

  it("a pushed image gets its record as an OCI artifact tagged sha256-<digest>.kiln; the next run reads it", async () => {
    const { dir, src } = project();
    // A builder that really pushes (a tiny image under the image's own tag).
    const builder = {
      buildImage: async (image: Image): Promise<ImageBuild> => {
        const pushed = await pushTestImage(registry, image.name, image.tag, "oci");
        return { uri: image.uri, digest: pushed.digest };
      },
    };
    const image = Image.fromBase("busybox:1.36", { registry: registry.host, name: "why/attached" }).withSourceFolder(src, "/app");
    process.env[EXPLAIN_RECORDS_ENV] = "1";
    let result;
    const events: BuildEvent[] = [];
    try {
      result = await build(image, { builder, projectDir: dir, onEvent: (e) => events.push(e) });
    } finally {
      process.env[EXPLAIN_RECORDS_ENV] = "local";
    }
    expect(events.filter((e) => e.type === "warning")).toEqual([]);
    const tags = (await (await fetch(`${registry.url}/v2/why/attached/tags/list`)).json()) as { tags: string[] };
    expect(tags.tags).toContain(explainArtifactTag(result.digest!));
    const attached = await readAttachedExplainRecord(result.uri!);
    const local = records(dir, "why/attached")[0]!;
    expect(attached).toEqual(local);
    // The artifact names the image as its subject (OCI 1.1; found through the referrers API where a registry has one).
    const manifest = (await (
      await fetch(`${registry.url}/v2/why/attached/manifests/${explainArtifactTag(result.digest!)}`, {
        headers: { accept: "application/vnd.oci.image.manifest.v1+json" },
      })
    ).json()) as Record<string, any>;
    expect(manifest.subject.digest).toBe(result.digest);
    expect(manifest.artifactType).toBe("application/vnd.kiln.explain.v1+json");
    // An image without a record: null, not an error.
    const bare = await pushTestImage(registry, "why/attached", "bare", "oci");
    expect(bare.digest).not.toBe(result.digest);
    expect(await readAttachedExplainRecord(`${registry.host}/why/attached:bare`)).toBeNull();
  });

  it("a registry whose HEAD gives no Content-Length: the artifact's subject still carries the manifest's real size", async () => {
    // A loopback proxy that drops Content-Length from HEAD answers (some CDNs in front of registries do).
    const target = new URL(registry.url);
    const proxy = http.createServer((req, res) => {
      const forwarded = http.request(
        { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } },
        (answer) => {
          const headers = { ...answer.headers };
          if (req.method === "HEAD") delete headers["content-length"];
          res.writeHead(answer.statusCode ?? 502, headers);
          answer.pipe(res);
        },
      );
      forwarded.on("error", () => res.destroy());
      req.pipe(forwarded);
    });
    await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
    const host = `127.0.0.1:${(proxy.address() as { port: number }).port}`;
    try {
      const pushed = await pushTestImage(registry, "why/nolength", "v1", "oci");
      const head = await fetch(`http://${host}/v2/why/nolength/manifests/${pushed.digest}`, {
        method: "HEAD",
        headers: { accept: "application/vnd.oci.image.manifest.v1+json" },
      });
      expect(head.headers.get("content-length")).toBeNull();
      const record = {
        v: 1,
        name: "why/nolength",
        tag: "v1",
        uri: `${host}/why/nolength:v1`,
        outcome: "built",
        at: new Date().toISOString(),
        recipe: "r",
        platforms: [],
        base: {},
        inputs: [],
        files: {},
      } as ExplainRecord;
      const tag = await attachExplainRecord(`${host}/why/nolength:v1`, pushed.digest, record);
      const get = (ref: string) =>
        fetch(`${registry.url}/v2/why/nolength/manifests/${ref}`, { headers: { accept: "application/vnd.oci.image.manifest.v1+json" } });
      const imageBytes = Buffer.from(await (await get(pushed.digest)).arrayBuffer());
      const artifact = (await (await get(tag)).json()) as { subject: { digest: string; size: number } };
      expect(artifact.subject).toMatchObject({ digest: pushed.digest, size: imageBytes.length });
    } finally {
      await new Promise((resolve) => proxy.close(() => resolve(undefined)));
    }
  });
});
