/**
 * Property: no user-typed value can add a Dockerfile instruction or escape its quoting.
 *
 * Hostile strings (newlines, CR, quotes, `$()`, backticks, `&&`, `;`, `\`, NUL, unicode, U+2028, lone
 * surrogates, `# directives`) are fed to every user-typed field. Each either throws a ValidationError, or
 * renders a Dockerfile that — parsed back by the small Dockerfile parser below (logical lines with `\`
 * continuations, comments, flags, JSON-form arguments, Docker's word processing of quotes, `\` and `$`) —
 * holds exactly the instructions the spec declared, with argument values equal to the declared values.
 */
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { renderDockerfile } from "../src/dockerfile.js";
import { BuildSecretsNeedBuildKitError, ValidationError } from "../src/errors.js";
import { Image } from "../src/image.js";
import { parseReference } from "../src/reference.js";

const RUNS = 2000;

// ---- a small Dockerfile parser (test side, written from Docker's documented grammar) -------------

interface Instruction {
  cmd: string;
  flags: string[];
  /** The JSON-form arguments, when the arguments are a JSON array of strings. */
  json?: string[];
  /** The raw argument text after the flags. */
  rest: string;
}

function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let logical: string | null = null;
  for (const line of text.split("\n")) {
    const isComment = /^\s*#/.test(line);
    if (isComment) continue; // comments are dropped, also inside a continued instruction
    if (logical === null && line.trim() === "") continue;
    const continued = /\\\s*$/.test(line);
    const piece = continued ? line.replace(/\\\s*$/, "") : line;
    logical = logical === null ? piece : logical + piece;
    if (!continued) {
      out.push(parseInstruction(logical));
      logical = null;
    }
  }
  if (logical !== null) out.push(parseInstruction(logical));
  return out;
}

function parseInstruction(line: string): Instruction {
  const m = /^\s*(\S+)\s*([\s\S]*)$/.exec(line);
  if (!m) throw new Error(`unparsable line ${JSON.stringify(line)}`);
  let rest = m[2]!;
  const flags: string[] = [];
  for (let f = /^--\S+\s*/.exec(rest); f; f = /^--\S+\s*/.exec(rest)) {
    flags.push(f[0].trim());
    rest = rest.slice(f[0].length);
  }
  const instruction: Instruction = { cmd: m[1]!.toUpperCase(), flags, rest };
  if (rest.startsWith("[")) {
    try {
      const parsed: unknown = JSON.parse(rest);
      if (Array.isArray(parsed) && parsed.every((x) => typeof x === "string")) instruction.json = parsed;
    } catch {
      // not JSON: shell form
    }
  }
  return instruction;
}

/** Docker's word processing (ProcessWord): quotes removed, `\` escapes, and an unescaped `$` would be a
 * variable reference, which a rendered value must never contain. */
function processWord(word: string): string {
  let out = "";
  let i = 0;
  while (i < word.length) {
    const ch = word[i]!;
    if (ch === "'") {
      const end = word.indexOf("'", i + 1);
      if (end < 0) throw new Error(`unterminated ' in ${JSON.stringify(word)}`);
      out += word.slice(i + 1, end);
      i = end + 1;
    } else if (ch === '"') {
      i++;
      for (;;) {
        if (i >= word.length) throw new Error(`unterminated " in ${JSON.stringify(word)}`);
        const c = word[i]!;
        if (c === '"') break;
        if (c === "\\" && i + 1 < word.length && ['"', "$", "\\"].includes(word[i + 1]!)) {
          out += word[i + 1];
          i += 2;
        } else if (c === "$") {
          throw new Error(`unescaped $ in ${JSON.stringify(word)}`);
        } else {
          out += c;
          i++;
        }
      }
      i++;
    } else if (ch === "\\") {
      if (i + 1 >= word.length) throw new Error(`trailing \\ in ${JSON.stringify(word)}`);
      out += word[i + 1];
      i += 2;
    } else if (ch === "$") {
      throw new Error(`unescaped $ in ${JSON.stringify(word)}`);
    } else {
      out += ch;
      i++;
    }
  }
  return out;
}

/** Splits `k="v" k2="v2"` into words the way Docker's parseWords does (whitespace outside quotes). */
function splitWords(text: string): string[] {
  const words: string[] = [];
  let word = "";
  let quote: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === "\\" && quote !== "'") {
      word += ch + (text[i + 1] ?? "");
      i++;
    } else if (quote) {
      if (ch === quote) quote = null;
      word += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      word += ch;
    } else if (/\s/.test(ch)) {
      if (word) words.push(word);
      word = "";
    } else word += ch;
  }
  if (quote) throw new Error(`unterminated quote in ${JSON.stringify(text)}`);
  if (word) words.push(word);
  return words;
}

function pairsOf(rest: string): Array<[string, string]> {
  return splitWords(rest).map((w) => {
    const eq = w.indexOf("=");
    if (eq < 0) throw new Error(`no = in ${JSON.stringify(w)}`);
    return [processWord(w.slice(0, eq)), processWord(w.slice(eq + 1))];
  });
}

// ---- hostile strings ----------------------------------------------------------------------------

const PIECES = [
  "\n",
  "\r",
  "\r\n",
  '"',
  "'",
  "$",
  "$(id)",
  "${HOME}",
  "`id`",
  "&&",
  ";",
  "|",
  "\\",
  "\\\n",
  "\0",
  "\u2028",
  "\u2029",
  "\u0085",
  " ",
  "\t",
  "#",
  "# escape=`",
  "RUN rm -rf /",
  "\nRUN evil",
  "\\\nRUN x",
  "[",
  "]",
  "{",
  "}",
  "=",
  "-",
  "--",
  "é",
  "😀",
  "\ud800",
  "\udc00",
  "A",
  "a",
  "1",
  "/",
  ":",
  "@",
  ".",
  "*",
  "?",
  "_",
];
const piece = fc.constantFrom(...PIECES);
const hostile = fc.oneof(
  fc.string({ unit: piece, maxLength: 12 }),
  fc.string({ unit: "grapheme", maxLength: 24 }),
  fc.string({ unit: "binary", maxLength: 24 }),
  fc
    .tuple(fc.constantFrom("git", "pandas", "app", "/app", "MY_KEY", "org.label", "1000", "numpy<2"), fc.string({ unit: piece, maxLength: 6 }))
    .map(([a, b]) => a + b),
);

/** Strings over a field's own alphabet salted with hostile pieces: many pass validation, so the
 * rendering of accepted values is what gets exercised. */
function near(alphabet: string, prefix = ""): fc.Arbitrary<string> {
  const unit = fc.oneof({ arbitrary: fc.constantFrom(...alphabet), weight: 8 }, { arbitrary: piece, weight: 1 });
  return fc.oneof({ arbitrary: fc.string({ unit, minLength: 1, maxLength: 16 }).map((x) => prefix + x), weight: 3 }, { arbitrary: hostile, weight: 1 });
}
const ANY_TEXT = "abcXYZ019 _-./:=@'\"$`()&;|\\#[]{}*?!~%^,<>+é😀\t";
const text = near(ANY_TEXT);
const envKey = near("ABCxyz_019", "K");
const labelKey = near("abcz019._-/", "l");
const aptName = near("abcz019+.-", "g");
const pipSpec = near("abcz019._-<>=!~", "p");
const userName = near("abz019_.-", "u");
const path = near("abc019/._- $'\"\\`é", "/");
const urlPart = near("abc019/._-%?&=#:@");
const registryText = near("abc019.:-/", "r");
const repoName = near("abc019._-/", "n");
const tagText = near("abcXYZ019._-", "t");
const refText = near("abc019._-/:", "i");
const stageName = near("abcXYZ019_.-", "s");
const secretId = near("ABCxyz_019.-", "S");
/** Half from the accepted alphabet (so enough render), half with the characters that would break a mount flag. */
const secretTarget = fc.oneof(near("abc019/._-@+:~", "/"), near("abc019/._-@+:~ ,=\"'$\\", "/"));

/** Runs `declare`; a ValidationError is an accepted outcome, any other error fails the property. */
let accepted = 0;
function declared(declare: () => Image): Image | null {
  try {
    const image = declare();
    accepted++;
    return image;
  } catch (error) {
    if (error instanceof ValidationError) return null;
    throw error;
  }
}

/** Both renderings, parsed; the FROM line is checked and dropped. */
function renderedInstructions(image: Image, from = "busybox:1.36"): Instruction[][] {
  return [true, false].map((buildkit) => {
    const instructions = parseDockerfile(renderDockerfile(image, { buildkit }));
    expect(instructions[0]).toMatchObject({ cmd: "FROM", rest: from });
    return instructions.slice(1);
  });
}

const base = () => Image.fromBase("busybox:1.36");
const pipBase = () => Image.fromBase("busybox:1.36").clone({ installer: "pip" });

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "kiln-inject-"));
  mkdirSync(join(dir, "folder"));
  writeFileSync(join(dir, "folder", "x"), "x");
  writeFileSync(join(dir, "file.txt"), "x");
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("no user input adds an instruction or escapes its quoting", () => {
  // A property whose inputs were all rejected would prove nothing: each must render a fair number.
  beforeEach(() => {
    accepted = 0;
  });
  afterEach((context) => {
    expect(accepted, `accepted (rendered) cases in "${context.task.name}"`).toBeGreaterThanOrEqual(50);
    console.log(`${context.task.name}: ${accepted} hostile inputs accepted and rendered safely`);
  });

  it("withCommands", () => {
    fc.assert(
      fc.property(fc.array(text, { minLength: 1, maxLength: 3 }), (commands) => {
        const image = declared(() => base().withCommands(...commands));
        if (!image) return;
        for (const instructions of renderedInstructions(image)) {
          expect(instructions.map((i) => i.cmd)).toEqual(commands.map(() => "RUN"));
          instructions.forEach((ins, k) => expect(ins.json).toEqual(["/bin/sh", "-c", commands[k]]));
        }
      }),
      { numRuns: RUNS },
    );
  });

  it("withCommands build secrets: ids and targets stay inside their --mount flag", () => {
    /** BuildKit reads a mount flag as one CSV record of key=value fields. */
    const mountFields = (flag: string) => {
      expect(flag.startsWith("--mount=")).toBe(true);
      return flag
        .slice("--mount=".length)
        .split(",")
        .map((field) => {
          const eq = field.indexOf("=");
          expect(eq, `field ${JSON.stringify(field)} of ${JSON.stringify(flag)}`).toBeGreaterThan(0);
          return [field.slice(0, eq), field.slice(eq + 1)];
        });
    };
    const plainId = fc.oneof(secretId, fc.constantFrom("NPM_TOKEN", "pip.conf", "_k-1"));
    fc.assert(
      fc.property(secretId, plainId, secretTarget, text, (id, id2, target, command) => {
        const image = declared(() => base().withCommands(command, { secrets: [id, { id: id2, target }] }));
        if (!image) return;
        const instructions = parseDockerfile(renderDockerfile(image)).slice(1);
        expect(instructions.map((i) => i.cmd)).toEqual(["RUN"]);
        expect(instructions[0]!.json).toEqual(["/bin/sh", "-c", command]);
        expect(instructions[0]!.flags.map(mountFields)).toEqual([
          [
            ["type", "secret"],
            ["id", id],
            ["required", "true"],
            ["mode", "0444"],
          ],
          [
            ["type", "secret"],
            ["id", id2],
            ["required", "true"],
            ["target", target],
            ["mode", "0444"],
          ],
        ]);
        // No build-arg or env expansion can reach a mount flag: nothing Docker would substitute.
        for (const flag of instructions[0]!.flags) expect(flag).not.toMatch(/[$"'\\\s]/);
        expect(() => renderDockerfile(image, { buildkit: false })).toThrow(BuildSecretsNeedBuildKitError);
      }),
      { numRuns: RUNS },
    );
  });

  it("withEnvVars keys and values", () => {
    fc.assert(
      fc.property(envKey, text, text, (key, value, value2) => {
        const image = declared(() => base().withEnvVars({ [key]: value, SECOND: value2 }));
        if (!image) return;
        for (const instructions of renderedInstructions(image)) {
          expect(instructions.map((i) => i.cmd)).toEqual(["ENV"]);
          expect(new Map(pairsOf(instructions[0]!.rest))).toEqual(
            new Map([
              [key, value],
              ["SECOND", value2],
            ]),
          );
        }
      }),
      { numRuns: RUNS },
    );
  });

  it("withLabels keys and values", () => {
    fc.assert(
      fc.property(labelKey, text, (key, value) => {
        const image = declared(() => base().withLabels({ [key]: value }));
        if (!image) return;
        for (const instructions of renderedInstructions(image)) {
          expect(instructions.map((i) => i.cmd)).toEqual(["LABEL"]);
          expect(pairsOf(instructions[0]!.rest)).toEqual([[key, value]]);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it("withWorkdir and withUser", () => {
    fc.assert(
      fc.property(path, userName, (path, user) => {
        const image = declared(() => base().withWorkdir(path).withUser(user));
        if (!image) return;
        for (const instructions of renderedInstructions(image)) {
          expect(instructions.map((i) => i.cmd)).toEqual(["WORKDIR", "USER"]);
          expect(processWord(instructions[0]!.rest)).toBe(path);
          expect(processWord(instructions[1]!.rest)).toBe(user);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it("withAptPackages", () => {
    fc.assert(
      fc.property(fc.array(aptName, { minLength: 1, maxLength: 3 }), (packages) => {
        const image = declared(() => base().withAptPackages(...packages));
        if (!image) return;
        for (const instructions of renderedInstructions(image)) {
          expect(instructions.map((i) => i.cmd)).toEqual(["RUN"]);
          const argv = instructions[0]!.json!;
          expect(argv.slice(0, 2)).toEqual(["/bin/sh", "-c"]);
          expect(argv.slice(3)).toEqual(["sh", ...packages]);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it("withPipPackages requirement specs", () => {
    fc.assert(
      fc.property(fc.array(pipSpec, { minLength: 1, maxLength: 2 }), fc.boolean(), (packages, usePip) => {
        const image = declared(() => (usePip ? pipBase() : base()).withPipPackages(...packages));
        if (!image) return;
        for (const instructions of renderedInstructions(image)) {
          expect(instructions.map((i) => i.cmd)).toEqual(usePip ? ["RUN"] : ["COPY", "RUN"]);
          expect(instructions.at(-1)!.json!.slice(-packages.length - 1)).toEqual(["--", ...packages]);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it("every PipOption (index URLs, extra args)", () => {
    fc.assert(
      fc.property(urlPart, urlPart, text, fc.boolean(), (indexPath, extraPath, extraArg, usePip) => {
        const options = { indexUrl: `https://h/${indexPath}`, extraIndexUrls: [`http://e:8080/${extraPath}`], extraArgs: [extraArg] };
        const image = declared(() => (usePip ? pipBase() : base()).withPipPackages("rich", options));
        if (!image) return;
        for (const instructions of renderedInstructions(image)) {
          expect(instructions.map((i) => i.cmd)).toEqual(usePip ? ["RUN"] : ["COPY", "RUN"]);
          const argv = instructions.at(-1)!.json!;
          expect(argv.slice(-3)).toEqual([extraArg, "--", "rich"]);
          expect(argv[argv.indexOf("--index-url") + 1]).toBe(options.indexUrl);
          expect(argv[argv.indexOf("--extra-index-url") + 1]).toBe(options.extraIndexUrls[0]);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it("withSourceFolder and withSourceFile destinations", () => {
    fc.assert(
      fc.property(path, path, (folderDest, fileDest) => {
        const image = declared(() => base().withSourceFolder(join(dir, "folder"), folderDest).withSourceFile(join(dir, "file.txt"), fileDest));
        if (!image) return;
        const fileTarget = (image.layers[1] as { dest: string }).dest;
        for (const instructions of renderedInstructions(image)) {
          expect(instructions.map((i) => i.cmd)).toEqual(["COPY", "COPY"]);
          // Which copy comes first depends on the destinations (a configuration location stays in place).
          const copies = instructions.map((i) => i.json!.map(processWord)).sort((x, y) => x[0]!.localeCompare(y[0]!));
          expect(copies).toEqual([
            ["kiln-layers/0/", folderDest],
            ["kiln-layers/1/file.txt", fileTarget],
          ]);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it("file names of copied files and requirements files", () => {
    let n = 0;
    fc.assert(
      fc.property(text, (name) => {
        if (name.includes("/") || name.includes("\0") || name === "" || name === "." || name === "..") return;
        const sub = join(dir, `names-${n++}`);
        mkdirSync(sub);
        try {
          try {
            writeFileSync(join(sub, name), "x");
          } catch {
            return; // not a valid file name on this file system
          }
          const image = declared(() => pipBase().withSourceFile(join(sub, name), "/dest/").withRequirements(join(sub, name)));
          if (!image) return;
          for (const instructions of renderedInstructions(image)) {
            // A dot-named copy is a configuration file and stays before the install; others move after it.
            const order = name.startsWith(".") ? ["COPY", "COPY", "RUN"] : ["COPY", "RUN", "COPY"];
            expect(instructions.map((i) => i.cmd)).toEqual(order);
            const copies = instructions.filter((i) => i.cmd === "COPY").map((i) => i.json!.map(processWord));
            const run = instructions.find((i) => i.cmd === "RUN")!;
            expect(copies).toContainEqual([`kiln-layers/1/${name}`, `/opt/kiln/requirements/1/${name}`]);
            expect(run.json!.slice(-2)).toEqual(["-r", `/opt/kiln/requirements/1/${name}`]);
            expect(copies).toContainEqual([`kiln-layers/0/${name}`, `/dest/${name}`]);
            expect(copies).toHaveLength(2);
          }
        } finally {
          rmSync(sub, { recursive: true, force: true });
        }
      }),
      { numRuns: RUNS },
    );
  });

  it("base image references, uv image and Dockerfile targets", () => {
    fc.assert(
      fc.property(refText, refText, (ref, uvImage) => {
        const image = declared(() => Image.fromBase(ref).clone({ uvImage }).withPipPackages("rich"));
        if (!image) return;
        for (const instructions of renderedInstructions(image, ref)) {
          expect(instructions.map((i) => i.cmd)).toEqual(["COPY", "RUN"]);
          expect(instructions[0]!.flags).toEqual([`--from=${uvImage}`]);
        }
      }),
      { numRuns: RUNS },
    );
    writeFileSync(join(dir, "Dockerfile"), "FROM busybox:1.36 AS build\n");
    fc.assert(
      fc.property(stageName, (target) => {
        const image = declared(() => Image.fromDockerfile(join(dir, "Dockerfile"), { target }).withEnvVars({ A: "1" }));
        if (!image) return;
        const instructions = parseDockerfile(renderDockerfile(image));
        expect(instructions.map((i) => i.cmd)).toEqual(["FROM", "FROM", "ENV"]);
        expect(instructions[1]!.rest).toBe(`${target} AS kiln-final`);
      }),
      { numRuns: RUNS },
    );
  });

  it("registry, name and tag stay inside the image reference", () => {
    const check = (registry: string, name: string, tag: string) => {
      const image = declared(() => Image.fromDebianBase({ registry, name }).clone({ tag }));
      if (!image) return;
      // Docker's rule: a lowercase first component without `.`/`:` (and not localhost) is a Docker Hub namespace.
      const first = registry.split("/")[0]!;
      const hub = !/[.:]/.test(first) && first !== "localhost" && first.toLowerCase() === first;
      expect(image.uri).toBe(`${hub ? `docker.io/${registry}` : registry}/${name}:${tag}`);
      const parsed = parseReference(image.uri);
      expect(parsed.tag).toBe(tag);
      expect(parsed.repository.endsWith(name)).toBe(true);
    };
    fc.assert(
      fc.property(registryText, (registry) => check(registry, "app", "v1")),
      { numRuns: RUNS },
    );
    fc.assert(
      fc.property(repoName, (name) => check("localhost:5000", name, "v1")),
      { numRuns: RUNS },
    );
    fc.assert(
      fc.property(tagText, (tag) => check("localhost:5000", "app", tag)),
      { numRuns: RUNS },
    );
  });

  it("uv project and node project arguments", () => {
    writeFileSync(join(dir, "pyproject.toml"), "[project]\n");
    writeFileSync(join(dir, "uv.lock"), "version = 1\n");
    mkdirSync(join(dir, "web"), { recursive: true });
    writeFileSync(join(dir, "web", "package.json"), "{}");
    writeFileSync(join(dir, "web", "package-lock.json"), "{}");
    fc.assert(
      fc.property(text, path, (extraArg, dest) => {
        const image = declared(() =>
          base()
            .withUvProject({ pyproject: join(dir, "pyproject.toml"), uvLock: join(dir, "uv.lock"), extraArgs: [extraArg] })
            .withNodeProject(join(dir, "web"), { dest }),
        );
        if (!image) return;
        const destDir = dest.endsWith("/") ? dest : `${dest}/`;
        for (const instructions of renderedInstructions(image)) {
          expect(instructions.map((i) => i.cmd)).toEqual(["COPY", "COPY", "RUN", "COPY", "RUN", "COPY"]);
          expect(instructions[2]!.json!.at(-1)).toBe(extraArg);
          expect(instructions[3]!.json!.map(processWord).at(-1)).toBe(destDir);
          expect(instructions[4]!.json!.at(-1)).toBe(destDir);
          expect(instructions[5]!.json!.map(processWord)).toEqual(["kiln-layers/1/", destDir]);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it("a mixed spec keeps exactly its instruction list", () => {
    fc.assert(
      fc.property(text, path, text, text, userName, (envValue, workdir, command, label, user) => {
        const image = declared(() =>
          base()
            .withLabels({ note: label })
            .withEnvVars({ V: envValue })
            .withWorkdir(workdir)
            .withCommands(command)
            .withUser(user)
            .withSourceFolder(join(dir, "folder"), "/app"),
        );
        if (!image) return;
        for (const instructions of renderedInstructions(image)) {
          expect(instructions.map((i) => i.cmd)).toEqual(["ENV", "WORKDIR", "RUN", "USER", "COPY", "LABEL"]);
          expect(pairsOf(instructions[0]!.rest)).toEqual([["V", envValue]]);
          expect(processWord(instructions[1]!.rest)).toBe(workdir);
          expect(instructions[2]!.json).toEqual(["/bin/sh", "-c", command]);
          expect(processWord(instructions[3]!.rest)).toBe(user);
          const rootUser = /^(root|0)(:.*)?$/.test(user);
          expect(instructions[4]!.flags).toEqual(rootUser ? [] : [`--chown=${user}`]);
          expect(pairsOf(instructions[5]!.rest)).toEqual([["note", label]]);
        }
      }),
      { numRuns: RUNS },
    );
  });
});

describe("the test parser itself", () => {
  it("sees an injected instruction, so the properties above can fail", () => {
    const injected = parseDockerfile('ENV A="x"\nRUN evil\nCOPY ["a","b"]\nRUN echo \\\n  continued\n# comment\n');
    expect(injected.map((i) => i.cmd)).toEqual(["ENV", "RUN", "COPY", "RUN"]);
    expect(injected[2]!.json).toEqual(["a", "b"]);
    expect(injected[3]!.rest).toBe("echo   continued");
    expect(() => processWord("a$b")).toThrow();
    expect(processWord("\"a\\$b\" c\\ d'$x'")).toBe("a$b c d$x");
  });
});
