/**
 * Golden-file tests of renderDockerfile: one Dockerfile per layer kind, with and without BuildKit.
 * Goldens live in test/fixtures/golden/<case>.<buildkit|classic>.Dockerfile; run with UPDATE_GOLDEN=1 to
 * rewrite them (then review the diff: goldens are the spec of the rendering recipe).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dockerBuildTarget, KILN_FINAL_STAGE, planDockerfile, renderDockerfile } from "../src/dockerfile.js";
import { BuildSecretsNeedBuildKitError, KilnError, SourceNotFoundError } from "../src/errors.js";
import { Image } from "../src/image.js";

const GOLDEN_DIR = new URL("./fixtures/golden/", import.meta.url);
const update = process.env.UPDATE_GOLDEN === "1";

let dir: string;
const p = (...parts: string[]) => join(dir, ...parts);

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "kiln-golden-"));
  mkdirSync(p("src", "pkg"), { recursive: true });
  writeFileSync(p("src", "pkg", "main.py"), "print('hi')\n");
  writeFileSync(p("requirements.txt"), "requests==2.32.3\n");
  writeFileSync(p("pyproject.toml"), "[project]\nname = 'demo'\nversion = '0.1.0'\n");
  writeFileSync(p("uv.lock"), "version = 1\n");
  writeFileSync(p("config.yaml"), "a: 1\n");
  writeFileSync(p(".dockerignore"), "# comment\n**/*.pyc\n!keep.pyc\n");
  mkdirSync(p("web"));
  writeFileSync(p("web", "package.json"), '{"name":"web","version":"1.0.0"}\n');
  writeFileSync(p("web", "package-lock.json"), '{"lockfileVersion":3}\n');
  mkdirSync(p("pweb"));
  writeFileSync(p("pweb", "package.json"), '{"name":"pweb","version":"1.0.0"}\n');
  writeFileSync(p("pweb", "pnpm-lock.yaml"), "lockfileVersion: '9.0'\n");
  writeFileSync(p("Dockerfile"), "FROM busybox:1.36 AS build\nRUN echo built > /built\n\nFROM busybox:1.36\nCOPY --from=build /built /built\n");
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const debian = () => Image.fromDebianBase({ pythonVersion: [3, 12] });

const cases: Array<[name: string, make: () => Image]> = [
  ["base-debian", () => debian()],
  ["base-node", () => Image.fromNodeBase({ nodeVersion: 22 })],
  ["apt", () => debian().withAptPackages("git", "curl=7.88.1-10+deb12u5", "libc6:arm64", "vim/bookworm-backports")],
  ["pip-uv", () => debian().withPipPackages("pandas", "numpy<2", 'uvicorn[standard]>=0.30; python_version >= "3.9"')],
  [
    "pip-uv-options",
    () =>
      debian().withPipPackages("torch", {
        indexUrl: "https://download.pytorch.org/whl/cpu",
        extraIndexUrls: ["https://pypi.org/simple"],
        pre: true,
        extraArgs: ["--no-deps"],
      }),
  ],
  ["pip-pip", () => Image.fromDebianBase({ installer: "pip" }).withPipPackages("pandas", { pre: true, indexUrl: "https://pypi.org/simple" })],
  ["requirements", () => debian().withRequirements(p("requirements.txt"))],
  ["requirements-pip", () => Image.fromDebianBase({ installer: "pip" }).withRequirements(p("requirements.txt"), { extraArgs: ["--no-deps"] })],
  ["commands", () => debian().withCommands("echo one && echo two", "printf '%s\\n' \"$HOME\"\necho second line")],
  ["env", () => debian().withEnvVars({ MODE: "prod", QUOTED: 'say "hi" $HOME \\ `x`', EMPTY: "" })],
  ["workdir", () => debian().withWorkdir("/srv/my app")],
  ["source-folder", () => debian().withSourceFolder(p("src")).withSourceFolder(p("src"), "/app/src")],
  ["source-file", () => debian().withSourceFile(p("config.yaml")).withSourceFile(p("config.yaml"), "/etc/app/")],
  ["dockerignore", () => debian().withDockerignore(p(".dockerignore")).withSourceFolder(p("src"), "/app")],
  ["uv-project", () => debian().withUvProject({ pyproject: p("pyproject.toml"), uvLock: p("uv.lock"), extraArgs: ["--no-dev"] })],
  ["node-npm", () => Image.fromNodeBase().withWorkdir("/app").withNodeProject(p("web"))],
  ["node-pnpm", () => Image.fromNodeBase().withNodeProject(p("pweb"), { dest: "/srv/web" })],
  ["labels", () => debian().withLabels({ "org.opencontainers.image.source": "https://example.com/repo", note: 'a "b" $c' })],
  ["user", () => debian().withCommands("useradd --create-home app").withUser("app").withAptPackages("git").withSourceFolder(p("src"), "/home/app/src")],
  // Python installs write the system site-packages: as root, then back to the declared user.
  [
    "user-python",
    () =>
      debian()
        .withCommands("useradd --create-home app")
        .withUser("app")
        .withPipPackages("rich")
        .withRequirements(p("requirements.txt"))
        .withUvProject({ pyproject: p("pyproject.toml"), uvLock: p("uv.lock") }),
  ],
  ["user-python-pip", () => Image.fromDebianBase({ installer: "pip" }).withUser("1000:1000").withPipPackages("rich")],
  // Node installs run as the declared user, without root-owned cache mounts; corepack enable as root.
  ["user-node-npm", () => Image.fromNodeBase().withUser("node").withWorkdir("/home/node/app").withNodeProject(p("web"))],
  ["user-node-pnpm", () => Image.fromNodeBase().withUser("node").withNodeProject(p("pweb"), { dest: "/home/node/web" })],
  [
    "ordering",
    () =>
      debian()
        .withSourceFolder(p("src"), "/app/src")
        .withPipPackages("requests")
        .withAptPackages("git")
        .withRequirements(p("requirements.txt"))
        .withLabels({ stage: "one" })
        .withEnvVars({ MODE: "prod" })
        .withSourceFile(p("config.yaml"), "/app/config.yaml")
        .withAptPackages("curl")
        .withCommands("python -m compileall /app"),
  ],
  // Copies into configuration locations stay before the installs that may read them; sources move.
  [
    "config-copies",
    () =>
      Image.fromDebianBase({ pythonVersion: [3, 12], installer: "pip" })
        .withSourceFolder(p("src"), "/app/src")
        .withSourceFile(p("config.yaml"), "/etc/apt/sources.list.d/mirror.sources")
        .withAptPackages("git")
        .withSourceFile(p("config.yaml"), "/root/.config/pip/pip.conf")
        .withSourceFile(p("config.yaml"), "./.npmrc")
        .withPipPackages("requests")
        .withSourceFile(p("config.yaml"), "/app/config.yaml"),
  ],
  // A config copy into a folder copied before it keeps that folder copy first (the later file wins);
  // an app directory under /usr (/usr/src/app) is a source and moves after the install.
  [
    "config-copies-overlap",
    () =>
      Image.fromDebianBase({ pythonVersion: [3, 12], installer: "pip" })
        .withSourceFolder(p("src"), "/srv/other")
        .withSourceFolder(p("src"), "/app")
        .withSourceFile(p("config.yaml"), "/app/.env")
        .withSourceFolder(p("src"), "/usr/src/app")
        .withWorkdir("/work")
        .withSourceFolder(p("src"), "./lib")
        .withSourceFile(p("config.yaml"), "/work/.npmrc")
        .withPipPackages("requests"),
  ],
  // The phase follows the resolved destination: a relative copy into a config workdir is config,
  // `..` is resolved, a relative path climbing out of the unknown workdir overlaps everything.
  [
    "config-copies-resolved",
    () =>
      Image.fromDebianBase({ pythonVersion: [3, 12], installer: "pip" })
        .withSourceFolder(p("src"), "/root")
        .withWorkdir("/etc/apt/sources.list.d")
        .withSourceFile(p("config.yaml"), "internal.list")
        .withAptPackages("git")
        .withWorkdir("/srv")
        .withSourceFile(p("config.yaml"), "/usr/../etc/pip.conf")
        .withSourceFolder(p("src"), "/srv/app")
        .withPipPackages("requests"),
  ],
  ["from-base", () => Image.fromBase("ghcr.io/acme/base:1.0").withEnvVars({ A: "1" })],
  ["from-dockerfile-layers", () => Image.fromDockerfile(p("Dockerfile")).withPipPackages("rich").withEnvVars({ B: "2" })],
  ["from-dockerfile-target", () => Image.fromDockerfile(p("Dockerfile"), { target: "build" }).withCommands("echo more")],
];

describe("renderDockerfile goldens", () => {
  for (const [name, make] of cases) {
    for (const buildkit of [true, false]) {
      const file = `${name}.${buildkit ? "buildkit" : "classic"}.Dockerfile`;
      it(file, () => {
        const rendered = renderDockerfile(make(), { buildkit });
        const url = new URL(file, GOLDEN_DIR);
        if (update) writeFileSync(url, rendered);
        expect(rendered).toBe(readFileSync(url, "utf8"));
        expect(rendered).not.toMatch(/^#\s*syntax/im);
        if (!buildkit) expect(rendered).not.toContain("--mount");
      });
    }
  }
});

/** Build secrets exist only with BuildKit: these goldens have no classic twin (see the classic test below). */
const secretCases: Array<[name: string, make: () => Image]> = [
  [
    "commands-secrets",
    () =>
      debian()
        .withAptPackages("git")
        .withCommands("npm whoami", "pip download --no-deps rich", {
          secrets: ["NPM_TOKEN", { id: "pip_conf", target: "/root/.config/pip/pip.conf" }],
        })
        .withCommands("echo no secrets here")
        .withWorkdir("/srv")
        .withCommands("cat /run/secrets/api.key-2 >/dev/null", { secrets: ["api.key-2"] })
        // After a non-root user the mount is 0444, so that user can read it.
        .withUser("app")
        .withCommands("cat /run/secrets/NPM_TOKEN >/dev/null", { secrets: ["NPM_TOKEN"] }),
  ],
];

describe("renderDockerfile goldens: build secrets", () => {
  for (const [name, make] of secretCases) {
    const file = `${name}.buildkit.Dockerfile`;
    it(file, () => {
      const rendered = renderDockerfile(make());
      const url = new URL(file, GOLDEN_DIR);
      if (update) writeFileSync(url, rendered);
      expect(rendered).toBe(readFileSync(url, "utf8"));
      expect(rendered).not.toMatch(/^#\s*syntax/im);
    });
  }

  it("the classic builder refuses an image with secrets: a typed error with the hint, from render and plan", () => {
    const image = secretCases[0]![1]();
    for (const attempt of [() => renderDockerfile(image, { buildkit: false }), () => planDockerfile(image, { buildkit: false })]) {
      const error = (() => {
        try {
          attempt();
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(error).toBeInstanceOf(BuildSecretsNeedBuildKitError);
      expect(KilnError.isInstance(error)).toBe(true);
      expect(BuildSecretsNeedBuildKitError.isInstance(error)).toBe(true);
      const e = error as BuildSecretsNeedBuildKitError;
      expect(e.code).toBe("KILN_SECRETS_NEED_BUILDKIT");
      expect(e.message).toContain("layers[1]");
      expect(e.message).toContain("NPM_TOKEN, pip_conf");
      expect(e.hint).toBe("build with BuildKit (the default); the classic builder cannot mount secrets");
    }
    // The same commands without secrets render classic as before, with no mount at all.
    const plain = debian().withCommands("npm whoami");
    expect(renderDockerfile(plain, { buildkit: false })).toBe(renderDockerfile(plain, { buildkit: true }));
  });

  it("every command of the layer gets the mounts; other layers get none", () => {
    const lines = renderDockerfile(secretCases[0]![1]()).trimEnd().split("\n");
    const mounted = lines.filter((l) => l.includes("type=secret"));
    expect(mounted.map((l) => JSON.parse(l.slice(l.indexOf("[")))[2])).toEqual([
      "npm whoami",
      "pip download --no-deps rich",
      "cat /run/secrets/api.key-2 >/dev/null",
      "cat /run/secrets/NPM_TOKEN >/dev/null",
    ]);
    // 0444 always: the step may run as a non-root user Kiln cannot see (the base image's USER).
    expect(mounted.every((l) => l.includes(",mode=0444"))).toBe(true);
    expect(lines.find((l) => l.includes("echo no secrets here"))).toBe('RUN ["/bin/sh","-c","echo no secrets here"]');
  });
});

describe("renderDockerfile rules", () => {
  it("returns a Dockerfile image's own file untouched when no layers are added", () => {
    const image = Image.fromDockerfile(p("Dockerfile"), { target: "build" });
    expect(renderDockerfile(image)).toBe(readFileSync(p("Dockerfile"), "utf8"));
    expect(dockerBuildTarget(image)).toBe("build");
    expect(dockerBuildTarget(image.withEnvVars({ A: "1" }))).toBe(KILN_FINAL_STAGE);
    expect(dockerBuildTarget(Image.fromDockerfile(p("Dockerfile")).withEnvVars({ A: "1" }))).toBeUndefined();
  });

  it("appends to a Dockerfile with a custom escape directive, escaping Kiln's words with its character", () => {
    writeFileSync(p("Escaped.Dockerfile"), "# escape=`\nFROM busybox:1.36\n");
    const image = Image.fromDockerfile(p("Escaped.Dockerfile")).withEnvVars({ A: "$x `y` \\z" });
    expect(renderDockerfile(image)).toBe('# escape=`\nFROM busybox:1.36\nENV A="`$x ``y`` \\z"\n');
    // Untouched it is fine.
    expect(renderDockerfile(Image.fromDockerfile(p("Escaped.Dockerfile")))).toContain("escape=`");
  });

  it("never chowns without a declared user, and never chowns to root", () => {
    const plain = renderDockerfile(debian().withSourceFolder(p("src"), "/app"));
    expect(plain).not.toContain("--chown");
    const root = renderDockerfile(debian().withUser("root").withSourceFolder(p("src"), "/app"));
    expect(root).not.toContain("--chown");
    const app = renderDockerfile(debian().withUser("1000:1000").withSourceFolder(p("src"), "/app"));
    expect(app).toContain('COPY --chown=1000:1000 ["kiln-layers/1/","/app"]');
  });

  it("after a non-root user, Python installs run as root and switch back; node installs stay the user's", () => {
    const lines = (text: string) => text.trimEnd().split("\n");
    for (const buildkit of [true, false]) {
      const py = lines(
        renderDockerfile(
          debian()
            .withUser("app")
            .withPipPackages("rich")
            .withRequirements(p("requirements.txt"))
            .withUvProject({ pyproject: p("pyproject.toml"), uvLock: p("uv.lock") }),
          { buildkit },
        ),
      );
      for (const installer of [/"uv","pip","install"/, /uv sync/]) {
        const at = py.findIndex((l) => installer.test(l));
        expect(at, `${installer}`).toBeGreaterThan(0);
        expect(py[at - 1]).toBe("USER root");
        expect(py[at + 1]).toBe("USER app");
      }
      expect(py.at(-1)).toBe("USER app");

      for (const [dir, manager] of [
        ["web", "npm"],
        ["pweb", "pnpm"],
      ] as const) {
        const node = lines(renderDockerfile(Image.fromNodeBase().withUser("node").withNodeProject(p(dir)), { buildkit }));
        const install = node.findIndex((l) => (l.includes(`${manager} `) && l.includes("install")) || l.includes("npm ci"));
        expect(
          node
            .slice(0, install)
            .filter((l) => l.startsWith("USER "))
            .at(-1),
        ).toBe("USER node");
        expect(node.join("\n")).not.toContain("/root/");
        if (manager === "pnpm") expect(node.slice(0, install)).toEqual(expect.arrayContaining(["USER root", 'RUN ["corepack","enable"]']));
        // No cache mount a non-root user could not write (BuildKit makes it root-owned); caches are cleaned.
        expect(node[install]).not.toContain("--mount");
        expect(node[install]).toMatch(/npm cache clean --force|pnpm store prune/);
      }
    }
    // Without a user (or as root) nothing switches.
    expect(renderDockerfile(debian().withUser("root").withPipPackages("rich")).match(/^USER /gm)).toEqual(["USER "]);
    expect(renderDockerfile(debian().withPipPackages("rich"))).not.toMatch(/^USER /m);
  });

  it("never emits a WORKDIR or USER that was not declared", () => {
    const text = renderDockerfile(debian().withAptPackages("git").withPipPackages("rich").withSourceFolder(p("src")));
    expect(text).not.toMatch(/^WORKDIR|^USER/m);
  });

  it("copies uv in only when a layer installs Python packages with uv", () => {
    expect(renderDockerfile(debian().withAptPackages("git"))).not.toContain("--from=");
    expect(renderDockerfile(Image.fromDebianBase({ installer: "pip" }).withPipPackages("rich"))).not.toContain("--from=");
    const custom = Image.fromDebianBase({ uvImage: "localhost:5000/uv:0.8" }).withPipPackages("rich");
    expect(renderDockerfile(custom)).toContain("COPY --from=localhost:5000/uv:0.8 /uv /uvx /usr/local/bin/");
  });

  it("a Dockerfile removed after declaration is a SourceNotFoundError at render time", () => {
    writeFileSync(p("Gone.Dockerfile"), "FROM busybox:1.36\n");
    const image = Image.fromDockerfile(p("Gone.Dockerfile"));
    rmSync(p("Gone.Dockerfile"));
    expect(() => renderDockerfile(image)).toThrow(SourceNotFoundError);
  });

  it("accepts a spec as well as an Image", () => {
    const image = debian().withEnvVars({ A: "1" });
    expect(renderDockerfile(image.spec)).toBe(renderDockerfile(image));
  });
});
