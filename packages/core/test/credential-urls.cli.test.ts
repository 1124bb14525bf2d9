/**
 * `kiln dockerfile` / `kiln explain` of a spec holding a credential-bearing URL: the real CLI entry
 * point (src/cli/main.ts, run with tsx so no build is needed) exits 2, names the field, and prints the
 * credential nowhere — neither on stdout (no Dockerfile is rendered) nor on stderr.
 */
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const CORE = resolve(import.meta.dirname, "..");
const MAIN = join(CORE, "src/cli/main.ts");
const TSX = pathToFileURL(createRequire(join(CORE, "package.json")).resolve("tsx")).href;
const INDEX = pathToFileURL(join(CORE, "src/index.ts")).href;
const TOKEN = "glpat-Zx9kQw7LmN3pRt5vYb1";

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function kiln(args: string[], cwd: string): Promise<Run> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ["--import", TSX, MAIN, ...args], {
      cwd,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, KILN_DEBUG: "" },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c) => (stdout += c));
    child.stderr.on("data", (c) => (stderr += c));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      fail(new Error(`kiln ${args.join(" ")} did not exit within 60 s`));
    }, 60_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "kiln-credentials-cli-"));
  writeFileSync(join(dir, "requirements.txt"), `rich==13.7.1\n--extra-index-url https://__token__:${TOKEN}@pypi.example.com/simple\n`);
  writeFileSync(
    join(dir, "pip.ts"),
    `
import { Image } from ${JSON.stringify(INDEX)};
export const api = Image.fromBase("python:3.12-slim", { name: "api" })
  .withPipPackages("rich", "lib @ git+https://oauth2:${TOKEN}@gitlab.example.com/acme/lib.git@v1");
`,
  );
  writeFileSync(
    join(dir, "requirements.ts"),
    `
import { Image } from ${JSON.stringify(INDEX)};
export const api = Image.fromBase("python:3.12-slim", { name: "api" }).withRequirements("requirements.txt");
`,
  );
  writeFileSync(
    join(dir, "env.ts"),
    `
import { Image } from ${JSON.stringify(INDEX)};
export const api = Image.fromBase("python:3.12-slim", { name: "api" }).withEnvVars({ DATABASE_URL: "postgres://app:${TOKEN}@db:5432/app" });
`,
  );
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("kiln refuses a spec with a credential in a URL", () => {
  // The requirements file is named by its path and line: `withRequirements (<dir>/requirements.txt:2)`.
  it.each([
    ["dockerfile", "pip.ts", "withPipPackages[1]"],
    ["dockerfile", "requirements.ts", "requirements.txt:2)"],
    ["explain", "env.ts", "withEnvVars.DATABASE_URL"],
  ])("kiln %s %s: exit 2, the field named, the token nowhere", async (command, spec, field) => {
    const run = await kiln([command, spec], dir);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toContain(field);
    expect(run.stderr).toMatch(/credentials?/);
    expect(run.stderr).toContain("***");
    expect(run.stdout).toBe("");
    expect(run.stdout + run.stderr).not.toContain(TOKEN);
  });
});
