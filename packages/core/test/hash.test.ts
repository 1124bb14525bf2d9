import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SourceNotFoundError } from "../src/errors.js";
import { computeTag, diffTagExplanations, explainTag } from "../src/hash.js";
import type { ImageSpec, Layer, SecretMount } from "../src/layers.js";
import { FileDigestCache } from "../src/statcache.js";

let root: string;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "kiln-hash-"));
  // Never touch the user's cache from tests.
  process.env.KILN_HASH_CACHE = join(root, "cache", "hash-cache.json");
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

function spec(layers: Layer[], extra: Partial<ImageSpec> = {}): ImageSpec {
  return {
    base: { kind: "image", ref: "python:3.11-slim-bookworm", python: [3, 11] },
    layers,
    name: "app",
    platform: ["linux/amd64"],
    installer: "uv",
    uvImage: "ghcr.io/astral-sh/uv:0.5.0",
    extendable: true,
    ...extra,
  };
}

let treeCount = 0;
/** A small source tree with a nested package, an executable, a symlink, and things to ignore. */
function makeTree(): string {
  const dir = join(root, `tree-${treeCount++}`);
  mkdirSync(join(dir, "pkg", "__pycache__"), { recursive: true });
  mkdirSync(join(dir, ".git"), { recursive: true });
  mkdirSync(join(dir, "node_modules", "x"), { recursive: true });
  writeFileSync(join(dir, "main.py"), "print('hello')\n");
  writeFileSync(join(dir, "pkg", "mod.py"), "X = 1\n");
  writeFileSync(join(dir, "pkg", "__pycache__", "mod.cpython-311.pyc"), "bytecode");
  writeFileSync(join(dir, "pkg", "old.pyc"), "bytecode");
  writeFileSync(join(dir, ".git", "HEAD"), "ref: refs/heads/main\n");
  writeFileSync(join(dir, "node_modules", "x", "index.js"), "module.exports = 1\n");
  writeFileSync(join(dir, "run.sh"), "#!/bin/sh\necho run\n", { mode: 0o755 });
  symlinkSync("main.py", join(dir, "entry.py"));
  return dir;
}

const folder = (hostPath: string): Layer => ({ kind: "sourceFolder", hostPath, dest: "/app" });
const tag = (s: ImageSpec) => computeTag(s, { cache: false });

describe("computeTag", () => {
  it("is 32 lowercase hex and stable for the same spec", () => {
    const tree = makeTree();
    const t = tag(spec([folder(tree)]));
    expect(t).toMatch(/^[0-9a-f]{32}$/);
    expect(tag(spec([folder(tree)]))).toBe(t);
    // The default (shared, persisted) cache gives the same answer.
    expect(computeTag(spec([folder(tree)]))).toBe(t);
  });

  it("tells layer kinds and list boundaries apart", () => {
    expect(tag(spec([{ kind: "aptPackages", packages: ["vim"] }]))).not.toBe(tag(spec([{ kind: "commands", commands: ["vim"] }])));
    expect(tag(spec([{ kind: "aptPackages", packages: ["ab", "c"] }]))).not.toBe(tag(spec([{ kind: "aptPackages", packages: ["a", "bc"] }])));
    expect(tag(spec([{ kind: "commands", commands: ["ab", "c"] }]))).not.toBe(tag(spec([{ kind: "commands", commands: ["a", "bc"] }])));
    expect(tag(spec([{ kind: "env", vars: [["A", "B=C"]] }]))).not.toBe(tag(spec([{ kind: "env", vars: [["A=B", "C"]] }])));
    const two: Layer[] = [
      { kind: "aptPackages", packages: ["a"] },
      { kind: "aptPackages", packages: ["b"] },
    ];
    expect(tag(spec(two))).not.toBe(tag(spec([{ kind: "aptPackages", packages: ["a", "b"] }])));
    expect(tag(spec(two))).not.toBe(tag(spec([...two].reverse())));
  });

  it("covers platforms as a set, python version, base, installer and uv image", () => {
    const base = tag(spec([]));
    expect(tag(spec([], { platform: ["linux/amd64", "linux/arm64"] }))).not.toBe(base);
    expect(tag(spec([], { platform: ["linux/arm64", "linux/amd64"] }))).toBe(tag(spec([], { platform: ["linux/amd64", "linux/arm64"] })));
    expect(tag(spec([], { base: { kind: "image", ref: "python:3.11-slim-bookworm", python: [3, 12] } }))).not.toBe(base);
    expect(tag(spec([], { base: { kind: "image", ref: "python:3.12-slim-bookworm", python: [3, 11] } }))).not.toBe(base);
    expect(tag(spec([], { installer: "pip" }))).not.toBe(base);
    expect(tag(spec([], { uvImage: "ghcr.io/astral-sh/uv:0.6.0" }))).not.toBe(base);
  });

  it("ignores registry, name, explicit tag and extendability (cloning keeps the tag)", () => {
    const base = tag(spec([{ kind: "aptPackages", packages: ["git"] }]));
    expect(tag(spec([{ kind: "aptPackages", packages: ["git"] }], { registry: "ghcr.io/acme", name: "other", tag: "v1", extendable: false }))).toBe(base);
  });

  it("changes with one byte of a copied file and with its executable bit", () => {
    const tree = makeTree();
    const before = tag(spec([folder(tree)]));
    writeFileSync(join(tree, "pkg", "mod.py"), "X = 2\n");
    const edited = tag(spec([folder(tree)]));
    expect(edited).not.toBe(before);
    chmodSync(join(tree, "pkg", "mod.py"), 0o755);
    expect(tag(spec([folder(tree)]))).not.toBe(edited);
  });

  it("does not change with mtime, non-exec permission bits, checkout location, or ignored files", () => {
    const tree = makeTree();
    const before = tag(spec([folder(tree)]));
    utimesSync(join(tree, "main.py"), new Date(2001, 1, 1), new Date(2001, 1, 1));
    chmodSync(join(tree, "main.py"), 0o600);
    chmodSync(join(tree, "run.sh"), 0o700);
    expect(tag(spec([folder(tree)]))).toBe(before);

    // Another checkout of the same tree, elsewhere.
    const copy = join(root, `copy-${treeCount++}`, "deeper", "src");
    cpSync(tree, copy, { recursive: true, verbatimSymlinks: true });
    expect(tag(spec([folder(copy)]))).toBe(before);

    // Default ignores: .git, __pycache__, *.pyc at any depth, node_modules.
    writeFileSync(join(tree, ".git", "index"), "changed");
    writeFileSync(join(tree, "pkg", "__pycache__", "new.pyc"), "x");
    writeFileSync(join(tree, "pkg", "another.pyc"), "x");
    writeFileSync(join(tree, "node_modules", "x", "index.js"), "changed");
    expect(tag(spec([folder(tree)]))).toBe(before);
    // ...but a new source file does change it.
    writeFileSync(join(tree, "pkg", "new.py"), "");
    expect(tag(spec([folder(tree)]))).not.toBe(before);
  });

  it("applies the folder's .dockerignore and earlier dockerIgnore layers instead of the defaults", () => {
    const tree = makeTree();
    writeFileSync(join(tree, "secret.env"), "A=1");
    const ignoreLayer: Layer = { kind: "dockerIgnore", hostPath: join(root, "x.dockerignore"), patterns: ["*.env"] };
    const before = tag(spec([ignoreLayer, folder(tree)]));
    writeFileSync(join(tree, "secret.env"), "A=2");
    expect(tag(spec([ignoreLayer, folder(tree)]))).toBe(before);
    // The explicit rules replace the defaults, so .git now counts.
    writeFileSync(join(tree, ".git", "HEAD"), "changed");
    expect(tag(spec([ignoreLayer, folder(tree)]))).not.toBe(before);

    const own = makeTree();
    writeFileSync(join(own, ".dockerignore"), "build\n");
    mkdirSync(join(own, "build"));
    writeFileSync(join(own, "build", "out.bin"), "1");
    const ownTag = tag(spec([folder(own)]));
    writeFileSync(join(own, "build", "out.bin"), "2");
    expect(tag(spec([folder(own)]))).toBe(ownTag);
  });

  it("hashes single files by name and content, not by host path", () => {
    const a = join(root, "ra", "requirements.txt");
    const b = join(root, "rb", "requirements.txt");
    mkdirSync(join(root, "ra"));
    mkdirSync(join(root, "rb"));
    writeFileSync(a, "requests==2.31.0\n");
    writeFileSync(b, "requests==2.31.0\n");
    const req = (hostPath: string): Layer => ({ kind: "requirements", hostPath, name: "requirements.txt" });
    expect(tag(spec([req(a)]))).toBe(tag(spec([req(b)])));
    writeFileSync(b, "requests==2.32.0\n");
    expect(tag(spec([req(a)]))).not.toBe(tag(spec([req(b)])));
    const file = (hostPath: string): Layer => ({ kind: "sourceFile", hostPath, dest: "/app/" });
    expect(tag(spec([file(a)]))).not.toBe(tag(spec([req(a)])));
  });

  it("never hashes index URL credentials", () => {
    const pip = (indexUrl: string): Layer => ({ kind: "pipPackages", packages: ["x"], indexUrl, extraIndexUrls: [indexUrl] });
    const withCreds = spec([pip("https://user:s3cr3t@pypi.example.com/simple")]);
    expect(tag(withCreds)).toBe(tag(spec([pip("https://pypi.example.com/simple")])));
    expect(JSON.stringify(explainTag(withCreds, { cache: false }))).not.toContain("s3cr3t");
    expect(tag(withCreds)).not.toBe(tag(spec([pip("https://other.example.com/simple")])));
  });

  it("covers the Dockerfile and its whole context for fromDockerfile, under the context's .dockerignore", () => {
    const ctx = join(root, "dctx");
    mkdirSync(join(ctx, "app"), { recursive: true });
    writeFileSync(join(ctx, "app", "a.txt"), "a");
    writeFileSync(join(ctx, ".dockerignore"), "*.tmp\n");
    writeFileSync(join(ctx, "x.tmp"), "1");
    const dockerfile = join(root, "outside.Dockerfile");
    writeFileSync(dockerfile, "FROM busybox\nCOPY app /app\n");
    const d = (buildArgs: Array<[string, string]> = []): ImageSpec =>
      spec([], { base: { kind: "dockerfile", dockerfileHostPath: dockerfile, contextHostPath: ctx, buildArgs } });
    const before = tag(d());
    writeFileSync(join(ctx, "x.tmp"), "2");
    expect(tag(d())).toBe(before);
    writeFileSync(join(ctx, "app", "a.txt"), "b");
    const edited = tag(d());
    expect(edited).not.toBe(before);
    writeFileSync(dockerfile, "FROM busybox\nCOPY app /srv\n");
    expect(tag(d())).not.toBe(edited);
    expect(
      tag(
        d([
          ["A", "1"],
          ["B", "2"],
        ]),
      ),
    ).toBe(
      tag(
        d([
          ["B", "2"],
          ["A", "1"],
        ]),
      ),
    );
    expect(tag(d([["A", "1"]]))).not.toBe(tag(d([["A", "2"]])));
  });

  it("fails with SourceNotFoundError naming a missing source", () => {
    const missing = join(root, "does-not-exist");
    let error: unknown;
    try {
      tag(spec([folder(missing)]));
    } catch (e) {
      error = e;
    }
    expect(SourceNotFoundError.isInstance(error)).toBe(true);
    expect((error as Error).message).toContain(missing);
    expect((error as SourceNotFoundError).hint).toBeTruthy();
  });
});

describe("explainTag", () => {
  it("lists the inputs, and a diff shows what changed", () => {
    const tree = makeTree();
    const s = spec([{ kind: "aptPackages", packages: ["git"] }, folder(tree)]);
    const before = explainTag(s, { cache: false });
    expect(before.tag).toBe(tag(s));
    expect(before.digest.startsWith(before.tag)).toBe(true);
    const labels = before.inputs.map((i) => i.label);
    expect(labels).toEqual(
      expect.arrayContaining(["recipe", "base", "platform", "layers[0] aptPackages", "layers[1] sourceFolder", "layers[1] main.py", "layers[1] run.sh"]),
    );
    expect(labels.some((l) => l.includes(".git") || l.includes("node_modules") || l.endsWith(".pyc"))).toBe(false);
    expect(before.inputs.find((i) => i.label === "layers[1] run.sh")!.value).toMatch(/^sha256:[0-9a-f]{64} \+x$/);
    expect(before.inputs.find((i) => i.label === "layers[1] entry.py")!.value).toBe("symlink -> main.py");
    // No host path in the inputs: they are the same in every checkout.
    expect(JSON.stringify(before.inputs)).not.toContain(tree);

    writeFileSync(join(tree, "main.py"), "print('bye')\n");
    const after = explainTag(s, { cache: false });
    const changes = diffTagExplanations(before, after);
    expect(changes.map((c) => c.label).sort()).toEqual(["layers[1] main.py", "layers[1] sourceFolder"]);
    expect(diffTagExplanations(after, after)).toEqual([]);
  });
});

describe("build secrets in the tag", () => {
  const commands = (secrets?: SecretMount[]): Layer =>
    secrets === undefined ? { kind: "commands", commands: ["npm whoami", "echo hi"] } : { kind: "commands", commands: ["npm whoami", "echo hi"], secrets };

  it("a commands layer without secrets hashes exactly as before secrets existed", () => {
    // Computed by the recipe before build secrets were added (git HEAD at the time): a regression pin,
    // so adding the feature moved no existing tag.
    expect(tag(spec([commands(), { kind: "aptPackages", packages: ["git"] }]))).toBe("fc2bdaadd08c04ee8855baefb0179c1f");
    // An empty list is "no secrets".
    expect(tag(spec([commands([])]))).toBe(tag(spec([commands()])));
  });

  it("covers secret ids and targets, in order; a secret never equals a command", () => {
    const none = tag(spec([commands()]));
    const npm = tag(spec([commands([{ id: "NPM_TOKEN" }])]));
    expect(npm).not.toBe(none);
    expect(tag(spec([commands([{ id: "NPM_TOKEN2" }])]))).not.toBe(npm);
    expect(tag(spec([commands([{ id: "NPM_TOKEN", target: "/root/.npmrc" }])]))).not.toBe(npm);
    expect(tag(spec([commands([{ id: "NPM_TOKEN", target: "/root/.npmrc" }])]))).not.toBe(
      tag(spec([commands([{ id: "NPM_TOKEN", target: "/root/.npmrc2" }])])),
    );
    const ab = tag(spec([commands([{ id: "a" }, { id: "b" }])]));
    expect(tag(spec([commands([{ id: "b" }, { id: "a" }])]))).not.toBe(ab);
    // Field framing: the secret id is not a command, and `secrets` is not a command list.
    const asCommand: Layer = { kind: "commands", commands: ["npm whoami", "echo hi", "NPM_TOKEN"] };
    expect(tag(spec([asCommand]))).not.toBe(npm);
    expect(tag(spec([commands([{ id: "NPM_TOKEN" }])]))).toBe(npm); // and stable
  });

  it("explainTag lists the secret ids and targets, and no value can be in it (the spec has none)", () => {
    const layer = commands([{ id: "NPM_TOKEN" }, { id: "pip_conf", target: "/root/.config/pip/pip.conf" }]);
    const explained = explainTag(spec([layer]), { cache: false });
    const input = explained.inputs.find((i) => i.label === "layers[0] commands")!;
    expect(input.value).toBe('commands=["npm whoami","echo hi"] secrets=["NPM_TOKEN","pip_conf=/root/.config/pip/pip.conf"]');
    const diff = diffTagExplanations(explainTag(spec([commands()]), { cache: false }), explained);
    expect(diff.map((c) => c.label)).toEqual(["layers[0] commands"]);
  });
});

describe("stat cache", () => {
  it("reuses digests across processes (persisted) and notices a same-size edit", () => {
    const tree = makeTree();
    const old = new Date(Date.now() - 60_000);
    for (const f of ["main.py", "pkg/mod.py", "run.sh"]) utimesSync(join(tree, f), old, old);
    const file = join(root, "cache-a.json");
    const first = new FileDigestCache(file);
    const t = computeTag(spec([folder(tree)]), { cache: first });
    expect(first.size).toBe(3);
    const persisted = readFileSync(file);
    expect(persisted.subarray(0, 8).toString("latin1")).toBe("KILNHC02");
    expect(persisted.toString("utf8")).toContain(join(tree, "pkg", "mod.py"));
    expect(new FileDigestCache(file).size).toBe(3);

    const second = new FileDigestCache(file); // as a new process would
    expect(computeTag(spec([folder(tree)]), { cache: second })).toBe(t);

    // Same size, mtime put back: the ctime still moves, so the cache misses and the tag changes.
    writeFileSync(join(tree, "main.py"), "print('HELLO')\n");
    utimesSync(join(tree, "main.py"), old, old);
    expect(computeTag(spec([folder(tree)]), { cache: new FileDigestCache(file) })).not.toBe(t);
  });

  it("ignores a corrupt cache file and replaces it", () => {
    const tree = makeTree();
    const old = new Date(Date.now() - 60_000);
    utimesSync(join(tree, "main.py"), old, old);
    const file = join(root, "cache-corrupt.bin");
    writeFileSync(file, "KILNHC02 garbage that is not a table");
    const cache = new FileDigestCache(file);
    expect(cache.size).toBe(0);
    computeTag(spec([folder(tree)]), { cache });
    expect(new FileDigestCache(file).size).toBe(1);
  });

  it("does not remember files modified within the racy window", () => {
    const tree = makeTree();
    const cache = new FileDigestCache(undefined);
    computeTag(spec([folder(tree)]), { cache });
    expect(cache.size).toBe(0);
  });

  it("merges entries written concurrently by another process", () => {
    const a = makeTree();
    const b = makeTree();
    const old = new Date(Date.now() - 60_000);
    for (const tree of [a, b]) for (const f of ["main.py", "pkg/mod.py", "run.sh"]) utimesSync(join(tree, f), old, old);
    const file = join(root, "cache-b.json");
    const one = new FileDigestCache(file);
    const two = new FileDigestCache(file);
    // Both "processes" read the (absent) cache file before either writes it.
    const probe = { size: 0, mtimeMs: 0, ctimeMs: 0, ino: 0, dev: 0 };
    expect(one.get("/nowhere", probe)).toBeUndefined();
    expect(two.get("/nowhere", probe)).toBeUndefined();
    computeTag(spec([folder(a)]), { cache: one });
    computeTag(spec([folder(b)]), { cache: two });
    expect(new FileDigestCache(file).size).toBe(6);
  });
});

describe("with the Image class", () => {
  it("computeTag(image) equals computeTag(image.spec) and Image.tag", async () => {
    const { Image } = await import("../src/image.js");
    const image = Image.fromDebianBase({ pythonVersion: [3, 11] }).withAptPackages("vim");
    expect(computeTag(image)).toBe(computeTag(image.spec));
    expect(image.tag).toBe(computeTag(image));
    expect(Image.fromDebianBase({ pythonVersion: [3, 11] }).withCommands("vim").tag).not.toBe(image.tag);
    expect(explainTag(image).tag).toBe(image.tag);
  });
});
