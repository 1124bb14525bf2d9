/**
 * Hostile input at scale (issue 8 §3). fast-check properties over the whole public declaration API
 * (every `with*`, every constructor's options, `clone`, `parseReference`, `Image.fromJSON` with
 * arbitrary JSON), the CLI's argument handling (in-process for the bulk, the real binary for a
 * sample), build contexts (no tar entry ever escapes: no `..`, no leading `/`; a symlink inside a
 * source folder is archived as a symlink, never followed), malformed plugin manifests (discovery)
 * and malformed spec files. The only accepted failure is a typed KilnError with a message.
 *
 * Runs per property are in RUNS below; the totals are printed and recorded in docs/reliability.md.
 */
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { isAbsolute, join, relative, resolve } from "node:path";
import fc from "fast-check";
import { extract } from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBuildContext } from "../../src/context.js";
import { discoverPlugins, findProvider, importProvider, type DiscoveredProvider } from "../../src/discovery.js";
import { KilnError, PluginLoadError, ValidationError } from "../../src/errors.js";
import { Image } from "../../src/image.js";
import { parseReference } from "../../src/reference.js";
import { loadSpec } from "../../src/cli/spec.js";
import type { CommandContext } from "../../src/cli/run.js";

const RUNS = {
  constructors: 8_000,
  withMethods: 2_500, // per method, 14 methods
  clone: 6_000,
  parseReference: 20_000,
  fromJSON: 8_000,
  cliInProcess: 8_000,
  cliSpawned: 12,
  contextPaths: 400,
  pluginManifests: 1_500,
  specFiles: 300,
};
const counted: Record<string, number> = {};
const count = (name: string) => (counted[name] = (counted[name] ?? 0) + 1);

const CORE = resolve(import.meta.dirname, "../..");
let dir: string;
let folder: string;
let outsideSecret: string;
beforeAll(() => {
  dir = realpathSync(mkdtempSync(join(tmpdir(), "kiln-hostile-")));
  // tree/app holds ordinary files and symlinks pointing OUT of the tree (absolute and relative);
  // outside/secret.txt is what a followed symlink would leak into the context.
  folder = join(dir, "tree", "app");
  mkdirSync(join(folder, "sub"), { recursive: true });
  mkdirSync(join(dir, "outside"));
  outsideSecret = `OUTSIDE-${Date.now()}-CONTENT`;
  writeFileSync(join(dir, "outside", "secret.txt"), outsideSecret);
  writeFileSync(join(folder, "main.py"), "print('hi')\n");
  writeFileSync(join(folder, "sub", "data.txt"), "data\n");
  symlinkSync(join(dir, "outside", "secret.txt"), join(folder, "abs-link"));
  symlinkSync("../../outside/secret.txt", join(folder, "rel-link"));
  symlinkSync("../../outside", join(folder, "sub", "dir-link"));
  symlinkSync("/etc/passwd", join(folder, "etc-link"));
  writeFileSync(join(dir, "tree", "requirements.txt"), "pandas\n");
  writeFileSync(join(dir, "tree", "pyproject.toml"), "[project]\nname='x'\n");
  writeFileSync(join(dir, "tree", "uv.lock"), "version = 1\n");
  writeFileSync(join(dir, "tree", "package.json"), "{}");
  writeFileSync(join(dir, "tree", ".dockerignore"), "*.log\n");
  writeFileSync(join(dir, "tree", "Dockerfile"), "FROM scratch\n");
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  const total = Object.values(counted).reduce((a, b) => a + b, 0);
  console.info(
    `[reliability] hostile input: ${total} generated cases — ${Object.entries(counted)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ")}`,
  );
});

// ---- generators -----------------------------------------------------------------------------------

const PIECES = [
  "..",
  ".",
  "/",
  "\\",
  "\n",
  "\r",
  "\0",
  " ",
  "$(id)",
  "`id`",
  "${X}",
  '"',
  "'",
  ";",
  "&&",
  "#",
  "*",
  "?",
  "[",
  "~",
  "%2e%2e",
  "é",
  "😀",
  "\ud800",
  "\u2028",
  "a",
  "b",
  "app",
  "sub",
  ":",
  "@",
  "=",
  "-",
  "--",
  "file://",
  "http://u:p@h/",
];
const hostileString = fc.oneof(
  fc.string({ unit: fc.constantFrom(...PIECES), maxLength: 10 }),
  fc.string({ unit: "grapheme", maxLength: 20 }),
  fc.string({ unit: "binary", maxLength: 20 }),
  fc.constantFrom("", "..", "/", "../..", "/etc/passwd", "../../outside", "a/../../b", "./", "~", "C:\\x", "\\\\srv\\x"),
);
/** Any value at all: what JavaScript callers (or JSON) can pass where a typed field is expected. */
const anyValue = fc.oneof(
  { arbitrary: hostileString, weight: 4 },
  { arbitrary: fc.anything({ maxDepth: 2 }), weight: 2 },
  { arbitrary: fc.constantFrom(undefined, null, 0, -1, NaN, Infinity, true, [], {}, [""], ["linux/amd64"], [3, 11], new URL("file:///etc/passwd")), weight: 1 },
);
const anyRecord = fc.oneof(fc.dictionary(hostileString, anyValue, { maxKeys: 3 }), anyValue);
/** An options bag: anything at all, `null` included (a ValidationError, never a TypeError). */
const optionsBag = anyRecord;
const pathLike = fc.oneof(
  {
    arbitrary: fc
      .array(fc.constantFrom("..", ".", "app", "sub", "outside", "tree", "main.py", "abs-link", "rel-link", "dir-link", "etc-link", "", "secret.txt"), {
        minLength: 1,
        maxLength: 5,
      })
      .map((p) => p.join("/")),
    weight: 3,
  },
  // Not "/" or /tmp: walking the whole machine is no test (and /proc's unreadable links are a known gap, see docs).
  { arbitrary: fc.constantFrom("/etc", "/etc/passwd", "/etc/hostname", "../../../../../etc/hostname"), weight: 1 },
  { arbitrary: hostileString, weight: 1 },
);

/** The call either returns, or throws a typed KilnError with a message; anything else fails. */
function typedOrValue<T>(name: string, call: () => T): T | undefined {
  count(name);
  try {
    return call();
  } catch (error) {
    expect(KilnError.isInstance(error), `${name}: untyped ${String(error)}`).toBe(true);
    expect((error as KilnError).message.length).toBeGreaterThan(0);
    if (error instanceof ValidationError) expect((error as KilnError).message).toMatch(/\S/);
    return undefined;
  }
}

const base = () => Image.fromBase("busybox:1.36");

// ---- the declaration API ---------------------------------------------------------------------------

describe("every public entry point: a value or a typed error, never a crash", () => {
  it("constructors with arbitrary options", () => {
    fc.assert(
      fc.property(fc.constantFrom("debian", "node", "base", "dockerfile"), anyValue, optionsBag, (kind, first, options) => {
        typedOrValue("constructors", () => {
          const o = options as never;
          if (kind === "debian") return Image.fromDebianBase(o);
          if (kind === "node") return Image.fromNodeBase(o);
          if (kind === "base") return Image.fromBase(first as never, o);
          return Image.fromDockerfile(first as never, o);
        });
      }),
      { numRuns: RUNS.constructors },
    );
  });

  const methods: Array<[string, (i: Image, a: unknown, b: unknown) => Image]> = [
    ["withAptPackages", (i, a, b) => i.withAptPackages(a as never, b as never)],
    ["withPipPackages", (i, a, b) => i.withPipPackages(a as never, b as never)],
    ["withRequirements", (i, a, b) => i.withRequirements(a as never, b as never)],
    ["withCommands", (i, a, b) => i.withCommands(a as never, b as never)],
    ["withEnvVars", (i, a) => i.withEnvVars(a as never)],
    ["withWorkdir", (i, a) => i.withWorkdir(a as never)],
    ["withSourceFolder", (i, a, b) => i.withSourceFolder(a as never, b as never)],
    ["withSourceFile", (i, a, b) => i.withSourceFile(a as never, b as never)],
    ["withDockerignore", (i, a) => i.withDockerignore(a as never)],
    ["withUvProject", (i, a) => i.withUvProject(a as never)],
    ["withNodeProject", (i, a, b) => i.withNodeProject(a as never, b as never)],
    ["withLabels", (i, a) => i.withLabels(a as never)],
    ["withUser", (i, a) => i.withUser(a as never)],
    ["withPipPackages(options)", (i, a) => i.withPipPackages("pandas", a as never)],
  ];
  for (const [name, call] of methods) {
    it(`${name} with arbitrary arguments (relative paths resolve inside the fixture tree)`, () => {
      const cwd = process.cwd();
      process.chdir(join(dir, "tree"));
      try {
        fc.assert(
          fc.property(fc.oneof(anyValue, pathLike), fc.oneof(anyRecord, pathLike), (a, b) => {
            const image = typedOrValue("withMethods", () => call(base(), a, b));
            // An accepted declaration serialises and comes back the same.
            if (image) expect(Image.fromJSON(JSON.parse(JSON.stringify(image.toJSON()))).toJSON()).toEqual(image.toJSON());
          }),
          { numRuns: RUNS.withMethods },
        );
      } finally {
        process.chdir(cwd);
      }
    });
  }

  it("clone with arbitrary options", () => {
    fc.assert(
      fc.property(optionsBag, (options) => {
        const image = typedOrValue("clone", () =>
          base()
            .withCommands("true")
            .clone(options as never),
        );
        if (image) expect(image.uri).toMatch(/^[a-z0-9]/);
      }),
      { numRuns: RUNS.clone },
    );
  });

  it("parseReference with arbitrary strings and values", () => {
    fc.assert(
      fc.property(
        fc.oneof(hostileString, fc.string({ unit: fc.constantFrom(..."abc019.-_/:@", "sha256:", "A", "localhost", "5000"), maxLength: 30 }), anyValue),
        (ref) => {
          const parsed = typedOrValue("parseReference", () => parseReference(ref as never));
          if (parsed) {
            expect(parsed.registry).toMatch(/^[a-z0-9.:-]+$/i);
            expect(parsed.repository).not.toMatch(/\.\.|^\/|\/$|\s/);
          }
        },
      ),
      { numRuns: RUNS.parseReference },
    );
  });

  it("Image.fromJSON with arbitrary JSON and mutated valid specs", () => {
    const valid = base().withCommands("echo hi").withEnvVars({ A: "1" }).withLabels({ l: "v" }).toJSON() as unknown as Record<string, unknown>;
    const mutated = fc
      .tuple(
        fc.constantFrom(...Object.keys(valid), "layers", "base", "kilnSpecVersion", "__proto__", "constructor"),
        fc.oneof(
          anyValue,
          fc.json().map((j) => JSON.parse(j) as unknown),
        ),
      )
      .map(([key, value]) => ({ ...valid, [key]: value }));
    const layerMutation = fc
      .tuple(fc.constantFrom("commands", "env", "labels", "user", "workdir", "source", "pip", "apt", "bogus"), anyRecord)
      .map(([kind, rest]) => ({ ...valid, layers: [{ ...(typeof rest === "object" && rest ? rest : { value: rest }), kind }] }));
    fc.assert(
      fc.property(
        fc.oneof(
          fc.json().map((j) => JSON.parse(j) as unknown),
          anyValue,
          mutated,
          layerMutation,
        ),
        (json) => {
          const image = typedOrValue("fromJSON", () => Image.fromJSON(json));
          if (image) expect(Image.fromJSON(image.toJSON()).uri).toBe(image.uri);
        },
      ),
      { numRuns: RUNS.fromJSON },
    );
  });
});

// ---- build contexts: no path escape -------------------------------------------------------------

interface TarEntry {
  name: string;
  type: string;
  linkname?: string;
  body: string;
}
async function readTar(stream: NodeJS.ReadableStream): Promise<TarEntry[]> {
  const entries: TarEntry[] = [];
  const ex = extract();
  ex.on("entry", (header, body, next) => {
    const chunks: Buffer[] = [];
    body.on("data", (c: unknown) => chunks.push(c as Buffer));
    body.on("end", () => {
      entries.push({ name: header.name, type: header.type ?? "file", linkname: header.linkname ?? undefined, body: Buffer.concat(chunks).toString("utf8") });
      next();
    });
    body.resume();
  });
  await new Promise<void>((done, fail) => {
    ex.on("finish", done);
    ex.on("error", fail);
    stream.on("error", fail);
    stream.pipe(ex);
  });
  return entries;
}

describe("build contexts never escape", () => {
  it("source folders/files with `..`, absolute paths, symlinks out of the tree and hostile destinations", async () => {
    const cwd = process.cwd();
    process.chdir(folder);
    let accepted = 0;
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom("folder", "file"),
          pathLike,
          fc.option(fc.oneof(pathLike, hostileString), { nil: undefined }),
          async (kind, src, dest) => {
            // Folders outside the fixture are limited to /etc: walking "/" or the shared /tmp is no test.
            const target = resolve(folder, typeof src === "string" ? src : "");
            if (kind === "folder" && !(target.startsWith(dir) || target.startsWith("/etc"))) return;
            const image = typedOrValue("contextPaths", () => (kind === "folder" ? base().withSourceFolder(src, dest) : base().withSourceFile(src, dest)));
            if (!image) return;
            let entries: TarEntry[];
            try {
              entries = await readTar(createBuildContext(image, { dockerfile: "FROM scratch\n" }).stream);
            } catch (error) {
              expect(KilnError.isInstance(error), `context: untyped ${String(error)}`).toBe(true);
              return;
            }
            accepted++;
            for (const entry of entries) {
              expect(entry.name.startsWith("/"), entry.name).toBe(false);
              expect(entry.name.split("/"), entry.name).not.toContain("..");
              // A followed symlink would put the outside file's bytes in the context.
              // (A file named explicitly by withSourceFile is the user's choice and is read through a link.)
              if (kind === "folder" && entry.body.includes(outsideSecret))
                expect(entry.name, "outside content under a link's name").toMatch(/(^|\/)secret\.txt$/);
            }
            // Links inside a copied folder stay links with their stored target.
            if (kind === "folder") {
              for (const entry of entries.filter((e) => /\/(abs-link|rel-link|etc-link|dir-link)$/.test(e.name))) {
                expect(entry.type, entry.name).toBe("symlink");
                expect(entry.linkname).toMatch(/outside|etc\/passwd/);
              }
            }
          },
        ),
        { numRuns: RUNS.contextPaths },
      );
    } finally {
      process.chdir(cwd);
    }
    expect(accepted, "contexts actually built and read").toBeGreaterThan(20);
  }, 120_000);

  it("the folder with outward symlinks: each is a symlink entry, the outside content is never archived", async () => {
    const entries = await readTar(createBuildContext(base().withSourceFolder(folder, "/app"), { dockerfile: "FROM scratch\n" }).stream);
    const links = entries.filter((e) => e.type === "symlink");
    expect(links.map((l) => l.name.split("/").pop()).sort()).toEqual(["abs-link", "dir-link", "etc-link", "rel-link"]);
    expect(links.find((l) => l.name.endsWith("rel-link"))!.linkname).toBe("../../outside/secret.txt");
    expect(entries.some((e) => e.body.includes(outsideSecret))).toBe(false);
    expect(entries.some((e) => e.name.endsWith("main.py") && e.type === "file")).toBe(true);
  });
});

// ---- plugin manifests and spec files ------------------------------------------------------------

describe("malformed plugin manifests and spec files give precise typed errors", () => {
  it("discovery over arbitrary `kiln` manifests: never throws; problems are typed and name the package; escaping entries are refused", async () => {
    const escaping: DiscoveredProvider[] = [];
    const project = join(dir, "plugin-project");
    const pkgDir = join(project, "node_modules", "kiln-hostile-plugin");
    mkdirSync(pkgDir, { recursive: true });
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "hp", private: true, dependencies: { "kiln-hostile-plugin": "1.0.0" } }));
    const entry = fc.oneof(
      fc.constantFrom("./index.js#X", "./index.js", "../../../etc/passwd#x", "/etc/passwd", "#", "", "./missing.js#Y", "node:fs#readFileSync"),
      hostileString,
      anyValue,
    );
    const manifest = fc.oneof(
      anyValue,
      fc.record(
        {
          apiVersion: fc.oneof(fc.constant(1), anyValue),
          imageBuilders: fc.oneof(fc.dictionary(hostileString, entry, { maxKeys: 3 }), anyValue),
          imageCheckers: fc.oneof(fc.dictionary(hostileString, entry, { maxKeys: 2 }), anyValue),
          credentialProviders: fc.oneof(fc.dictionary(hostileString, entry, { maxKeys: 2 }), anyValue),
        },
        { requiredKeys: [] },
      ),
    );
    const rawText = fc.oneof(fc.constant(null), fc.string({ maxLength: 40 }));
    fc.assert(
      fc.property(manifest, rawText, (kiln, raw) => {
        count("pluginManifests");
        writeFileSync(join(pkgDir, "package.json"), raw ?? JSON.stringify({ name: "kiln-hostile-plugin", version: "1.0.0", kiln }));
        const discovery = discoverPlugins(project);
        for (const problem of discovery.problems) {
          expect(KilnError.isInstance(problem.error)).toBe(true);
          expect(problem.error.message).toContain("kiln-hostile-plugin");
        }
        for (const provider of [...discovery.imageBuilders, ...discovery.imageCheckers, ...discovery.credentialProviders]) {
          // An entry that leaves its package is refused before anything is imported.
          const rel = relative(pkgDir, provider.file);
          if (rel.startsWith("..") || isAbsolute(rel)) escaping.push(provider);
        }
        try {
          findProvider(discovery, "imageBuilder", "x");
        } catch (error) {
          expect(KilnError.isInstance(error), String(error)).toBe(true);
        }
      }),
      { numRuns: RUNS.pluginManifests },
    );
    expect(escaping.length, "manifests whose entries leave the package were generated").toBeGreaterThan(5);
    for (const provider of escaping) {
      const error = await importProvider(provider).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(PluginLoadError.isInstance(error), `${provider.entry}: ${String(error)}`).toBe(true);
      expect((error as KilnError).message).toMatch(/outside its package/);
    }
  });

  it("loadSpec over malformed spec files: a SpecLoadError naming the file", async () => {
    const specDir = join(dir, "specs");
    mkdirSync(specDir);
    let n = 0;
    const body = fc.oneof(
      fc.json().map((j) => `export default ${j};`),
      fc.json().map((j) => `export const a = ${j}; export const b = { uri: "x", spec: ${j} };`),
      fc.string({ maxLength: 60 }).map((s) => `throw new Error(${JSON.stringify(s)});`),
      fc.string({ unit: fc.constantFrom("(", ")", "{", "}", "export", " ", "import", ";", "'", "`", "default", "=>", "x"), maxLength: 20 }),
      fc.constantFrom(
        "",
        "module.exports = 1;",
        "export default undefined;",
        "export default class {}",
        "await new Promise(() => {}).then; export default 1;",
        "import x from 'kiln-no-such-package'; export default x;",
      ),
    );
    await fc.assert(
      fc.asyncProperty(
        body,
        fc.constantFrom(".mjs", ".js", ".cjs", ".txt", ""),
        fc.option(fc.oneof(hostileString, fc.constantFrom("default", "a", "missing")), { nil: undefined }),
        async (text, ext, exportName) => {
          count("specFiles");
          const file = join(specDir, `spec-${++n}${ext}`);
          writeFileSync(file, text);
          const arg = exportName === undefined ? file : `${file}#${exportName}`;
          const error = await loadSpec(arg).then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(error, `${JSON.stringify(text)} was accepted as a spec`).toBeDefined();
          expect(KilnError.isInstance(error), String(error)).toBe(true);
          expect((error as KilnError).code).toBe("KILN_SPEC_LOAD");
          expect((error as KilnError).message).toContain("spec-");
        },
      ),
      { numRuns: RUNS.specFiles },
    );
  }, 60_000);
});

// ---- CLI arguments ---------------------------------------------------------------------------------

function fakeContext(): { context: CommandContext; out: () => string; err: () => string } {
  let out = "";
  let err = "";
  const stream = (append: (s: string) => void) => ({ write: (s: string) => (append(String(s)), true), isTTY: false }) as unknown as NodeJS.WriteStream;
  return {
    context: { signal: new AbortController().signal, stdout: stream((s) => (out += s)), stderr: stream((s) => (err += s)), interactive: false, json: false },
    out: () => out,
    err: () => err,
  };
}

const FLAGS: Record<string, string[]> = {
  build: ["--builder", "--registry", "--platform", "--force", "--dry-run", "--strict", "--json", "--project"],
  plan: ["--builder", "--registry", "--platform", "--json", "--project", "--concurrency"],
  explain: ["--json"],
  dockerfile: ["--buildkit"],
  check: ["--platform", "--json"],
};
/** Arguments: real flags with hostile values, unknown flags, and a spec/ref positional that names nothing loadable. */
const cliArgs = (command: string) =>
  fc.array(
    fc.oneof(
      fc.constantFrom(...FLAGS[command]!),
      fc.tuple(fc.constantFrom(...FLAGS[command]!), hostileString).map(([f, v]) => `${f}=${v}`),
      fc.constantFrom("--", "-", "-x", "--frobnicate", "--json=1", "--platform", "--platform=linux/s390x", "--concurrency=0", "--concurrency=1e9", "--help=x"),
      hostileString.map((s) => (command === "check" ? `Bad Ref ${s}` : join(dir, "nope", `${s.replace(/\0/g, "")}.mjs`))),
    ),
    { maxLength: 5 },
  );

describe("CLI arguments", () => {
  it("in-process: every command's argument handling ends in a typed error (usage/spec) or a result — never a crash", async () => {
    const modules = {
      build: await import("../../src/cli/commands/build.js"),
      plan: await import("../../src/cli/commands/plan.js"),
      explain: await import("../../src/cli/commands/explain.js"),
      dockerfile: await import("../../src/cli/commands/dockerfile.js"),
      check: await import("../../src/cli/commands/check.js"),
    };
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...(Object.keys(modules) as Array<keyof typeof modules>)).chain((c) => fc.tuple(fc.constant(c), cliArgs(c))),
        async ([command, args]) => {
          count("cliInProcess");
          const { context, out } = fakeContext();
          let code: number | undefined;
          let error: unknown;
          try {
            code = await modules[command].run(args, context);
          } catch (e) {
            error = e;
          }
          if (error !== undefined) {
            expect(KilnError.isInstance(error), `${command} ${JSON.stringify(args)}: ${String(error)}`).toBe(true);
            expect(["KILN_USAGE", "KILN_SPEC_LOAD", "KILN_VALIDATION", "KILN_INVALID_REFERENCE", "KILN_CONFIG"]).toContain((error as KilnError).code);
            expect(out()).toBe(""); // nothing reported as a result
          } else {
            expect(typeof code).toBe("number");
          }
        },
      ),
      { numRuns: RUNS.cliInProcess },
    );
  }, 90_000);

  it("the real binary on a sample: exit 2, a `kiln:` message and a hint, no internal error", async () => {
    const samples = fc.sample(
      fc.constantFrom("build", "plan", "explain", "dockerfile", "check").chain((c) =>
        fc.tuple(
          fc.constant(c),
          cliArgs(c).filter((a) => a.length > 0 && !a.includes("--help") && !a.some((x) => x.includes("\0"))),
        ),
      ),
      { numRuns: RUNS.cliSpawned, seed: 8 },
    );
    const run = ([command, args]: [string, string[]]) =>
      new Promise<{ code: number; stderr: string; stdout: string }>((done) => {
        execFile(process.execPath, [join(CORE, "dist/cli/main.js"), command, ...args], { cwd: dir, timeout: 30_000 }, (error, stdout, stderr) => {
          count("cliSpawned");
          done({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
        });
      });
    for (let i = 0; i < samples.length; i += 4) {
      const results = await Promise.all(samples.slice(i, i + 4).map(run));
      results.forEach((r, k) => {
        const [command, args] = samples[i + k]!;
        const label = `${command} ${JSON.stringify(args)} → ${r.stderr}`;
        expect(r.code, label).toBe(2);
        expect(r.stderr, label).toMatch(/^kiln: /m);
        expect(r.stderr, label).toMatch(/^hint: /m);
        expect(r.stderr, label).not.toMatch(/internal error| {4}at /);
        expect(r.stdout, label).toBe("");
      });
    }
  }, 120_000);
});
