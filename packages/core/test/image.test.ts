/** The Image value object: constructors, immutability, JSON round trip, uri/tag, host paths. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SourceNotFoundError, ValidationError } from "../src/errors.js";
import { computeTag } from "../src/hash.js";
import { DEFAULT_UV_IMAGE, Image } from "../src/image.js";
import type { Layer } from "../src/layers.js";
import { thrown } from "./thrown.js";

let dir: string;
const p = (...parts: string[]) => join(dir, ...parts);

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "kiln-image-"));
  mkdirSync(p("src"));
  writeFileSync(p("src", "app.py"), "print(1)\n");
  writeFileSync(p("requirements.txt"), "rich\n");
  writeFileSync(p("pyproject.toml"), "[project]\nname='x'\n");
  writeFileSync(p("uv.lock"), "version = 1\n");
  writeFileSync(p(".dockerignore"), "# c\n\n  *.pyc  \n!keep.pyc\n/build/\n");
  writeFileSync(p("Dockerfile"), "FROM busybox:1.36\n");
  mkdirSync(p("node"));
  writeFileSync(p("node", "package.json"), "{}\n");
  writeFileSync(p("node", "package-lock.json"), "{}\n");
  mkdirSync(p("both"));
  writeFileSync(p("both", "package.json"), "{}\n");
  writeFileSync(p("both", "package-lock.json"), "{}\n");
  writeFileSync(p("both", "pnpm-lock.yaml"), "x\n");
  mkdirSync(p("nolock"));
  writeFileSync(p("nolock", "package.json"), "{}\n");
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function everyLayer(): Image {
  return Image.fromDebianBase({ registry: "localhost:5000/team", name: "app", platform: ["linux/amd64", "linux/arm64"] })
    .withAptPackages("git")
    .withPipPackages("pandas", { indexUrl: "https://pypi.org/simple", extraIndexUrls: ["https://x.org/simple"], pre: true, extraArgs: ["--no-deps"] })
    .withRequirements(p("requirements.txt"))
    .withCommands("echo hi")
    .withEnvVars({ A: "1", B: "two" })
    .withWorkdir("/app")
    .withSourceFolder(p("src"))
    .withSourceFile(p("requirements.txt"), "/etc/")
    .withDockerignore(p(".dockerignore"))
    .withUvProject({ pyproject: p("pyproject.toml"), uvLock: p("uv.lock"), extraArgs: ["--no-dev"] })
    .withNodeProject(p("node"), { dest: "/web" })
    .withLabels({ "org.example": "v" })
    .withUser("1000:1000");
}

describe("constructors", () => {
  it("fromDebianBase defaults", () => {
    const image = Image.fromDebianBase();
    expect(image.spec.base).toEqual({ kind: "image", ref: "python:3.11-slim-bookworm", python: [3, 11] });
    expect(image.name).toBe("kiln");
    expect(image.registry).toBeUndefined();
    expect(image.platform).toEqual(["linux/amd64"]);
    expect(image.spec.installer).toBe("uv");
    expect(image.spec.uvImage).toBe(DEFAULT_UV_IMAGE);
    expect(image.needsBuild).toBe(true);
    expect(Image.fromDebianBase({ pythonVersion: [3, 12] }).spec.base).toMatchObject({ ref: "python:3.12-slim-bookworm" });
    expect(Image.fromDebianBase({ baseImage: "localhost:5000/py:3" }).spec.base).toMatchObject({ ref: "localhost:5000/py:3", python: [3, 11] });
  });

  it("fromNodeBase defaults", () => {
    expect(Image.fromNodeBase().spec.base).toEqual({ kind: "image", ref: "node:20-bookworm-slim", node: 20 });
    expect(Image.fromNodeBase({ nodeVersion: 22 }).spec.base).toMatchObject({ ref: "node:22-bookworm-slim" });
  });

  it("fromBase is not built without layers and its uri is the base ref", () => {
    const image = Image.fromBase("ghcr.io/acme/base:1.0", { registry: "localhost:5000", name: "x" });
    expect(image.needsBuild).toBe(false);
    expect(image.uri).toBe("ghcr.io/acme/base:1.0");
    const layered = image.withEnvVars({ A: "1" });
    expect(layered.needsBuild).toBe(true);
    expect(layered.uri).toBe(`localhost:5000/x:${computeTag(layered)}`);
  });

  it("fromDockerfile: context defaults to the Dockerfile's folder; build args and target are kept", () => {
    const image = Image.fromDockerfile(p("Dockerfile"), { buildArgs: { V: "1" }, target: "final" });
    expect(image.spec.base).toEqual({
      kind: "dockerfile",
      dockerfileHostPath: p("Dockerfile"),
      contextHostPath: dir,
      buildArgs: [["V", "1"]],
      target: "final",
    });
    expect(image.needsBuild).toBe(true);
    const url = Image.fromDockerfile(pathToFileURL(p("Dockerfile")), { context: pathToFileURL(p("src")) });
    expect(url.spec.base).toMatchObject({ dockerfileHostPath: p("Dockerfile"), contextHostPath: p("src") });
    expect(image.extendable).toBe(true);
  });

  it("fromDockerfile: a missing file is a SourceNotFoundError naming the path", () => {
    const error = thrown(() => Image.fromDockerfile(p("Nope.Dockerfile")));
    expect(SourceNotFoundError.isInstance(error)).toBe(true);
    expect((error as SourceNotFoundError).message).toContain(p("Nope.Dockerfile"));
    expect((error as SourceNotFoundError).hint).toMatch(/current directory/);
  });
});

describe("immutability", () => {
  it("every with* returns a new Image and leaves the original unchanged", () => {
    const a = Image.fromDebianBase();
    const before = JSON.stringify(a);
    const b = a.withAptPackages("git");
    const c = b.withEnvVars({ X: "1" });
    expect(b).not.toBe(a);
    expect(c).not.toBe(b);
    expect(JSON.stringify(a)).toBe(before);
    expect(a.layers).toHaveLength(0);
    expect(b.layers).toHaveLength(1);
    expect(c.layers).toHaveLength(2);
  });

  it("the spec is deeply frozen", () => {
    const image = everyLayer();
    expect(Object.isFrozen(image.spec)).toBe(true);
    expect(() => (image.spec.layers as Layer[]).push({ kind: "user", user: "x" })).toThrow(TypeError);
    expect(() => {
      (image.spec.platform as string[])[0] = "linux/arm64";
    }).toThrow(TypeError);
    const apt = image.spec.layers[0] as Extract<Layer, { kind: "aptPackages" }>;
    expect(() => apt.packages.push("vim")).toThrow(TypeError);
  });

  it("clone sets registry, name, explicit tag, platform, extendable, installer, uvImage", () => {
    const a = Image.fromDebianBase({ registry: "ghcr.io/acme" }).withAptPackages("git");
    const b = a.clone({ registry: "localhost:5000", name: "other", tag: "v1", platform: ["linux/arm64"], installer: "pip", uvImage: "localhost:5000/uv:1" });
    expect(b.uri).toBe("localhost:5000/other:v1");
    expect(b.tag).toBe("v1");
    expect(b.platform).toEqual(["linux/arm64"]);
    expect(b.spec.installer).toBe("pip");
    expect(a.uri).toBe(`ghcr.io/acme/kiln:${a.tag}`);
    expect(b.clone({ registry: null, tag: null }).uri).toBe(`other:${b.clone({ tag: null }).tag}`);
    const locked = a.clone({ extendable: false });
    const error = thrown(() => locked.withEnvVars({ A: "1" }));
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).hint).toMatch(/extendable: true/);
  });
});

describe("tag and uri", () => {
  it("the automatic tag is computeTag of the spec: 32 lowercase hex", () => {
    const image = everyLayer();
    expect(image.tag).toMatch(/^[0-9a-f]{32}$/);
    expect(image.tag).toBe(computeTag(image.spec));
    expect(image.uri).toBe(`localhost:5000/team/app:${image.tag}`);
    expect(Image.fromDebianBase().uri).toBe(`kiln:${Image.fromDebianBase().tag}`);
  });

  it("explain() lists the inputs", () => {
    const explanation = everyLayer().explain();
    expect(explanation.tag).toBe(everyLayer().tag);
  });
});

describe("JSON", () => {
  it("round-trips every layer kind", () => {
    const image = everyLayer().clone({ tag: "v2" });
    const json = JSON.parse(JSON.stringify(image));
    expect(json.kilnSpecVersion).toBe(1);
    const back = Image.fromJSON(json);
    expect(back.toJSON()).toEqual(image.toJSON());
    expect(back.uri).toBe(image.uri);
    expect(Image.fromJSON(JSON.stringify(image)).toJSON()).toEqual(image.toJSON());
    expect(back.spec.layers.map((l) => l.kind)).toEqual([
      "aptPackages",
      "pipPackages",
      "requirements",
      "commands",
      "env",
      "workdir",
      "sourceFolder",
      "sourceFile",
      "dockerIgnore",
      "uvProject",
      "nodeProject",
      "labels",
      "user",
    ]);
  });

  it("validates what it reads, naming the JSON field", () => {
    const good = everyLayer().toJSON();
    const bad = (mutate: (j: Record<string, any>) => void): unknown => {
      const j = structuredClone(good) as Record<string, any>;
      mutate(j);
      return thrown(() => Image.fromJSON(j));
    };
    const fields: Array<[string, (j: Record<string, any>) => void]> = [
      [
        "kilnSpecVersion",
        (j) => {
          j.kilnSpecVersion = 2;
        },
      ],
      [
        "layers[0].packages[0]",
        (j) => {
          j.layers[0].packages[0] = "-y";
        },
      ],
      [
        "layers[3].commands[0]",
        (j) => {
          j.layers[3].commands[0] = "a\0";
        },
      ],
      [
        "layers[4].vars[0] value",
        (j) => {
          j.layers[4].vars[0][1] = "a\nb";
        },
      ],
      [
        "layers[6].hostPath",
        (j) => {
          j.layers[6].hostPath = "relative/path";
        },
      ],
      [
        "layers[12].kind",
        (j) => {
          j.layers[12].kind = "evil";
        },
      ],
      [
        "name",
        (j) => {
          j.name = "UPPER";
        },
      ],
      [
        "platform[0]",
        (j) => {
          j.platform = ["windows/amd64"];
        },
      ],
      [
        "base.ref",
        (j) => {
          j.base.ref = "x y";
        },
      ],
      [
        "extendable",
        (j) => {
          j.extendable = "yes";
        },
      ],
      // As strict as the with* methods: a glob in a copied file's name, a pattern that does not compile.
      [
        "layers[7].hostPath file name",
        (j) => {
          j.layers[7].hostPath = "/tmp/a*b";
        },
      ],
      [
        "layers[7].hostPath file name",
        (j) => {
          j.layers[7].hostPath = "/tmp/[x].txt";
        },
      ],
      [
        "layers[8].patterns[1]",
        (j) => {
          j.layers[8].patterns[1] = "[a";
        },
      ],
      [
        "layers[8].patterns[0]",
        (j) => {
          j.layers[8].patterns[0] = "!";
        },
      ],
      [
        "layers[9].extraArgs[0]",
        (j) => {
          j.layers[9].extraArgs = ["--index-url=https://u:p@h/simple"];
        },
      ],
    ];
    for (const [field, mutate] of fields) {
      const error = bad(mutate);
      expect(error, field).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).field).toBe(field);
    }
    expect(thrown(() => Image.fromJSON("{not json"))).toBeInstanceOf(ValidationError);
  });
});

describe("layers", () => {
  it("resolves relative host paths against the cwd at declaration", () => {
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      const image = Image.fromDebianBase().withSourceFolder("./src").withSourceFile("requirements.txt");
      expect(image.layers[0]).toEqual({ kind: "sourceFolder", hostPath: p("src"), dest: "./src" });
      expect(image.layers[1]).toEqual({ kind: "sourceFile", hostPath: p("requirements.txt"), dest: "./requirements.txt" });
    } finally {
      process.chdir(cwd);
    }
  });

  it("a missing source names the path with a hint", () => {
    const error = thrown(() => Image.fromDebianBase().withSourceFolder(p("missing")));
    expect(error).toBeInstanceOf(SourceNotFoundError);
    expect((error as SourceNotFoundError).message).toContain(p("missing"));
    expect((error as SourceNotFoundError).details).toMatchObject({ field: "withSourceFolder", path: p("missing") });
    expect(thrown(() => Image.fromDebianBase().withSourceFolder(p("requirements.txt")))).toBeInstanceOf(ValidationError);
    expect(thrown(() => Image.fromDebianBase().withSourceFile(p("src")))).toBeInstanceOf(ValidationError);
  });

  it("source file destinations ending in / keep the file name", () => {
    expect(Image.fromDebianBase().withSourceFile(p("requirements.txt"), "/etc/app/").layers[0]).toMatchObject({ dest: "/etc/app/requirements.txt" });
    expect(Image.fromDebianBase().withSourceFile(p("requirements.txt"), "/etc/x.txt").layers[0]).toMatchObject({ dest: "/etc/x.txt" });
  });

  it("withPipPackages takes options as the last argument", () => {
    const layer = Image.fromDebianBase().withPipPackages("a", "b", { pre: true }).layers[0];
    expect(layer).toEqual({ kind: "pipPackages", packages: ["a", "b"], pre: true });
    expect(thrown(() => Image.fromDebianBase().withPipPackages({ pre: true } as never))).toBeInstanceOf(ValidationError);
    expect(thrown(() => Image.fromDebianBase().withPipPackages("a", { bogus: 1 } as never))).toBeInstanceOf(ValidationError);
  });

  it("withDockerignore stores moby-cleaned patterns and rejects malformed ones", () => {
    expect(Image.fromDebianBase().withDockerignore(p(".dockerignore")).layers[0]).toEqual({
      kind: "dockerIgnore",
      hostPath: p(".dockerignore"),
      patterns: ["*.pyc", "!keep.pyc", "build"],
    });
    writeFileSync(p("bad.dockerignore"), "[a\n");
    expect(() => Image.fromDebianBase().withDockerignore(p("bad.dockerignore"))).toThrow();
  });

  it("withNodeProject picks the manager from the lockfile", () => {
    expect(Image.fromNodeBase().withNodeProject(p("node")).layers[0]).toEqual({
      kind: "nodeProject",
      hostPath: p("node"),
      dest: ".",
      manager: "npm",
      lockfile: "package-lock.json",
    });
    expect(Image.fromNodeBase().withNodeProject(p("both")).layers[0]).toMatchObject({ manager: "pnpm", lockfile: "pnpm-lock.yaml" });
    expect(Image.fromNodeBase().withNodeProject(p("both"), { manager: "npm" }).layers[0]).toMatchObject({ manager: "npm" });
    const error = thrown(() => Image.fromNodeBase().withNodeProject(p("nolock")));
    expect(error).toBeInstanceOf(SourceNotFoundError);
    expect((error as SourceNotFoundError).hint).toMatch(/lockfile/);
    expect(thrown(() => Image.fromNodeBase().withNodeProject(p("node"), { manager: "pnpm" }))).toBeInstanceOf(SourceNotFoundError);
  });

  it("rejects empty declarations", () => {
    expect(thrown(() => Image.fromDebianBase().withAptPackages())).toBeInstanceOf(ValidationError);
    expect(thrown(() => Image.fromDebianBase().withEnvVars({}))).toBeInstanceOf(ValidationError);
    expect(thrown(() => Image.fromDebianBase().withCommands())).toBeInstanceOf(ValidationError);
  });
});

describe("options arguments", () => {
  it("null or a non-object options bag is a ValidationError naming the call", () => {
    const calls: Array<[string, () => unknown]> = [
      ["fromDebianBase options", () => Image.fromDebianBase(null as never)],
      ["fromNodeBase options", () => Image.fromNodeBase("20" as never)],
      ["fromBase options", () => Image.fromBase("alpine", [] as never)],
      ["clone options", () => Image.fromBase("alpine").clone(null as never)],
    ];
    for (const [field, call] of calls) {
      const error = thrown(call);
      expect(ValidationError.isInstance(error)).toBe(true);
      expect((error as ValidationError).field).toBe(field);
    }
  });
});
