/**
 * A user's Dockerfile, then Kiln's instructions (`fromDockerfile(df).withUser("1234")`): whatever the
 * Dockerfile ends with, Kiln's lines are instructions of their own and the Dockerfile keeps the meaning
 * it has alone (an instruction open at end of file ends there, as `docker build` reads it). The
 * expected renderings are written out by hand; packages/docker/test/dockerfile-boundary.integration.test.ts
 * builds them on the real engine.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { planDockerfile, renderDockerfile } from "../src/dockerfile.js";
import { readDockerfileEnd } from "../src/dockerfileSyntax.js";
import { SourceNotFoundError, ValidationError } from "../src/errors.js";
import { Image } from "../src/image.js";

let dir: string;
let n = 0;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "kiln-df-boundary-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function dockerfile(text: string): string {
  const file = join(dir, `case-${n++}.Dockerfile`);
  writeFileSync(file, text);
  return file;
}

const withUser = (text: string, options?: { target?: string }) => renderDockerfile(Image.fromDockerfile(dockerfile(text), options).withUser("1234"));

/** [case, the user's Dockerfile, what Kiln renders for it with withUser("1234"), how the file alone ends
 * as Docker reads it: an instruction still open, or complete (then it is kept as it is)] */
const endings: Array<[name: string, text: string, rendered: string, end: "continuation" | "complete"]> = [
  ["a continuation at end of file", "FROM b\nRUN printf '%s\\n' building \\\n", "FROM b\nRUN printf '%s\\n' building \nUSER 1234\n", "continuation"],
  ["a continuation and no final newline", "FROM b\nRUN echo building \\", "FROM b\nRUN echo building \nUSER 1234\n", "continuation"],
  [
    "a continuation over several lines, CRLF line endings",
    "FROM b\r\nRUN echo a \\\r\n    b \\\r\n",
    "FROM b\r\nRUN echo a \\\r\n    b \nUSER 1234\n",
    "continuation",
  ],
  // Docker keeps continuing through blank and comment lines.
  [
    "a continuation then blank and comment lines",
    "FROM b\nRUN echo a \\\n    b \\\n\n# note\n   \n\t\n",
    "FROM b\nRUN echo a \\\n    b \nUSER 1234\n",
    "continuation",
  ],
  // A line holding only the escape character adds nothing but keeps continuing; its spaces are kept.
  ["a continuation then lines of only the escape character", "FROM b\nRUN echo a \\\n  \\\n\\\n", "FROM b\nRUN echo a   \nUSER 1234\n", "continuation"],
  ["a backtick continuation (# escape=`)", "# escape=`\nFROM b\nRUN echo a `\n", "# escape=`\nFROM b\nRUN echo a \nUSER 1234\n", "continuation"],
  [
    "a backtick continuation with CRLF and no final newline",
    "# escape=`\r\nFROM b\r\nRUN echo a `\r\n  b `",
    "# escape=`\r\nFROM b\r\nRUN echo a `\r\n  b \nUSER 1234\n",
    "continuation",
  ],
  [
    "a trailing backslash under # escape=` (text, not a continuation)",
    "# escape=`\nFROM b\nRUN echo C:\\\n",
    "# escape=`\nFROM b\nRUN echo C:\\\nUSER 1234\n",
    "complete",
  ],
  ["a trailing backtick under the default escape (text)", "FROM b\nRUN echo a`\n", "FROM b\nRUN echo a`\nUSER 1234\n", "complete"],
  ["an escaped escape character at the end (not a continuation)", "FROM b\nRUN echo a\\\\\n", "FROM b\nRUN echo a\\\\\nUSER 1234\n", "complete"],
  // A directive after any other line is a comment: the escape stays `\`.
  ["# escape=` after a blank line (a comment)", "\n# escape=`\nFROM b\nRUN echo a \\\n", "\n# escape=`\nFROM b\nRUN echo a \nUSER 1234\n", "continuation"],
  [
    "a continuation through a comment that ends the instruction",
    "FROM b\nRUN echo a \\\n# inside\n    b\n",
    "FROM b\nRUN echo a \\\n# inside\n    b\nUSER 1234\n",
    "complete",
  ],
  ["a top-level comment ending in the escape character", "FROM b\nRUN echo a\n# trailing \\\n", "FROM b\nRUN echo a\n# trailing \\\nUSER 1234\n", "complete"],
  [
    "a terminated heredoc whose lines end in the escape character",
    "FROM b\nRUN cat <<EOF > /x\nline \\\nEOF\n\n",
    "FROM b\nRUN cat <<EOF > /x\nline \\\nEOF\nUSER 1234\n",
    "complete",
  ],
  [
    "a terminated <<- heredoc (tabs before the terminator)",
    "FROM b\nRUN cat <<-EOF\n\thi \\\n\t\tEOF\n",
    "FROM b\nRUN cat <<-EOF\n\thi \\\n\t\tEOF\nUSER 1234\n",
    "complete",
  ],
  ["an exec-form RUN mentioning <<EOF (no heredoc)", 'FROM b\nRUN ["sh","-c","cat <<EOF"]\n', 'FROM b\nRUN ["sh","-c","cat <<EOF"]\nUSER 1234\n', "complete"],
  [
    "a here-string and an arithmetic shift (no heredoc)",
    'FROM b\nRUN cat <<<"x" && x=$((1<<2))\n',
    'FROM b\nRUN cat <<<"x" && x=$((1<<2))\nUSER 1234\n',
    "complete",
  ],
  ["a complete file with trailing blank lines (as before)", "FROM b\nRUN echo a\n\n\n", "FROM b\nRUN echo a\nUSER 1234\n", "complete"],
  ["a byte order mark and a continued FROM", "\ufeffFROM b \\\n", "\ufeffFROM b \nUSER 1234\n", "continuation"],
];

describe("renderDockerfile after a user's Dockerfile: Kiln's instructions are their own", () => {
  for (const [name, text, rendered, end] of endings) {
    it(name, () => {
      expect(readDockerfileEnd(text).kind).toBe(end);
      expect(withUser(text)).toBe(rendered);
      // The rendering ends complete: USER 1234 is not part of anything else.
      expect(readDockerfileEnd(rendered).kind).toBe("complete");
    });
  }

  it("a target's kiln-final stage is its own instruction too", () => {
    expect(withUser("FROM b AS build\nRUN echo a \\\n", { target: "build" })).toBe("FROM b AS build\nRUN echo a \nFROM build AS kiln-final\nUSER 1234\n");
  });

  it("planDockerfile's preamble is the closed Dockerfile (what the one-shot build sends)", () => {
    const plan = planDockerfile(Image.fromDockerfile(dockerfile("FROM b\nRUN echo a \\\n\n")).withUser("1234"));
    expect(plan.preamble).toEqual(["FROM b\nRUN echo a "]);
    expect(plan.steps.map((s) => s.lines)).toEqual([["USER 1234"]]);
  });
});

/** [case, the user's Dockerfile, the line the error names] */
const refused: Array<[name: string, text: string, line: number, says: RegExp]> = [
  ["an unterminated heredoc", "FROM b\nRUN cat <<EOF\n", 2, /heredoc <<EOF is never terminated/],
  ["a heredoc with content but no terminator", "FROM b\nRUN cat <<EOF > /x\nhello\n", 2, /heredoc <<EOF/],
  ["a quoted heredoc word under # escape=`", "# escape=`\nFROM b\nRUN cat <<'END' | sh\necho hi\n", 3, /heredoc <<END/],
  ["a COPY heredoc", "FROM b\nCOPY <<EOF /x\n", 2, /heredoc <<EOF/],
  ["a heredoc after flags, with a space before its word (BuildKit 1.16)", "FROM b\nRUN --mount=type=cache,target=/c cat << EOF\n", 2, /heredoc <<EOF/],
  ["an ONBUILD heredoc", "FROM b\nONBUILD RUN <<EOF\n", 2, /heredoc <<EOF/],
  ["a heredoc on a line continued at end of file", "FROM b\nRUN cat <<EOF \\\n", 2, /heredoc <<EOF/],
  ["a continued instruction with no text", "FROM b\nRUN echo a\n\\\n\n", 3, /continued instruction with no text/],
  ["an instruction whose text ends in the escape character", "FROM b\nRUN echo a \\ \\\n", 2, /ends in the escape character/],
  ["an invalid escape directive", "# escape=x\nFROM b\n", 1, /invalid escape token/],
  ["two escape directives", "# escape=`\n# escape=\\\nFROM b\n", 2, /only one escape parser directive/],
];

describe("a Dockerfile Kiln cannot append to: a ValidationError naming the file and line", () => {
  for (const [name, text, line, says] of refused) {
    it(name, () => {
      const file = dockerfile(text);
      const image = Image.fromDockerfile(file); // without layers the file goes to Docker as it is
      expect(renderDockerfile(image)).toBe(text);
      const error = (() => {
        try {
          image.withUser("1234"); // declaring the first layer reads the Dockerfile
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(ValidationError.isInstance(error)).toBe(true);
      const e = error as ValidationError;
      expect(e.field).toBe("fromDockerfile file");
      expect(e.message).toContain(file);
      expect(e.message).toContain(`line ${line}:`);
      expect(e.message).toMatch(says);
      expect(e.details).toEqual({ path: file, line });
      expect(e.hint).toBeTruthy();
    });
  }

  it("checks again when rendering: the Dockerfile may change after declaration", () => {
    const file = dockerfile("FROM b\nRUN echo fine\n");
    const image = Image.fromDockerfile(file).withUser("1234");
    writeFileSync(file, "FROM b\nRUN cat <<EOF\n");
    expect(() => renderDockerfile(image)).toThrow(ValidationError);
    expect(() => planDockerfile(image)).toThrow(/line 2: the heredoc <<EOF is never terminated/);
  });
});

describe("Kiln's words after a # escape=` directive use the backtick", () => {
  it("COPY words, ENV, WORKDIR and LABEL values are escaped with it; exec-form RUN is plain JSON", () => {
    const source = join(dir, "we`ird$'q.txt");
    writeFileSync(source, "x\n");
    const layers = (image: Image) =>
      image
        .withCommands('echo "`echo sub`" \\ $HOME')
        .withEnvVars({ E: 'a`b $H \\ "q"' })
        .withWorkdir("/srv/x`y $z")
        .withSourceFile(source, "/data/")
        .withLabels({ note: 'l`$"\\' })
        .withUser("1234");
    expect(renderDockerfile(layers(Image.fromDockerfile(dockerfile("# escape=`\nFROM b\nRUN echo a `\n"))))).toBe(
      [
        "# escape=`",
        "FROM b",
        "RUN echo a ",
        'RUN ["/bin/sh","-c","echo \\"`echo sub`\\" \\\\ $HOME"]',
        'ENV E="a``b `$H \\ `"q`""',
        'WORKDIR "/srv/x``y `$z"',
        'COPY ["kiln-layers/3/we``ird`$`\'q.txt","/data/we``ird`$`\'q.txt"]',
        "USER 1234",
        'LABEL note="l```$`"\\"',
        "",
      ].join("\n"),
    );
    // The same layers after a default-escape Dockerfile: escaped with `\` as always.
    expect(renderDockerfile(layers(Image.fromDockerfile(dockerfile("FROM b\n"))))).toBe(
      [
        "FROM b",
        'RUN ["/bin/sh","-c","echo \\"`echo sub`\\" \\\\ $HOME"]',
        'ENV E="a`b \\$H \\\\ \\"q\\""',
        'WORKDIR "/srv/x`y \\$z"',
        'COPY ["kiln-layers/3/we`ird\\\\$\\\\\'q.txt","/data/we`ird\\\\$\\\\\'q.txt"]',
        "USER 1234",
        'LABEL note="l`\\$\\"\\\\"',
        "",
      ].join("\n"),
    );
  });
});

describe("the Dockerfile is read without blocking", () => {
  it("a FIFO put in its place after declaration fails the rendering at once instead of hanging", () => {
    const file = dockerfile("FROM b\nRUN echo a\n");
    const image = Image.fromDockerfile(file).withUser("1234");
    rmSync(file);
    execFileSync("mkfifo", [file]);
    const started = Date.now();
    let error: unknown;
    try {
      renderDockerfile(image);
    } catch (e) {
      error = e;
    }
    expect(SourceNotFoundError.isInstance(error)).toBe(true);
    expect((error as Error).message).toContain("is not a regular file");
    expect(Date.now() - started).toBeLessThan(2000);
  });
});
