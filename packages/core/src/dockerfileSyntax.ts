/**
 * How a user's Dockerfile ends, read the way Docker's parser reads it (moby/buildkit
 * frontend/dockerfile/parser, parser.go + directives.go + split_command.go, and shell/lex.go for
 * heredoc words), so Kiln can append instructions that stay instructions of their own.
 *
 * What the parser does that matters at the end of a file:
 * - `# escape=` (a parser directive, only before any other line) makes "`" the escape character
 *   for the whole file: line continuation and word escapes.
 * - A line whose last character before spaces/tabs is the escape character (and not a second one
 *   right after another) continues onto the next line; comment lines and blank lines inside a continuation are skipped, so
 *   the instruction keeps going through them. At end of file the instruction simply ends there.
 * - A RUN/COPY/ADD (also under ONBUILD) in shell form with a `<<WORD` heredoc reads the following raw
 *   lines up to a line that is exactly WORD; BuildKit refuses a file where that line never comes.
 * - Line endings: `\r` before `\n` is dropped; a missing final newline changes nothing.
 *
 * `closeDockerfile` returns the text to put before Kiln's instructions: the user's Dockerfile meaning
 * exactly what it means alone, with its last instruction ended — a continuation open at end of file is
 * closed on its last line that carries text (the same instruction text Docker reads at end of file);
 * an unterminated heredoc, a continued instruction with no text, or one whose text ends in the escape
 * character cannot be closed without changing it, and are a ValidationError naming the file and line.
 * Where BuildKit versions differ (heredocs exist since Dockerfile syntax 1.4, `<< WORD` with a space
 * since 1.16), this follows the newest parser.
 */
import { ValidationError } from "./errors.js";
import type { EscapeChar } from "./quote.js";

/** The user's Dockerfile, ready for Kiln's instructions to follow on the next line. */
export interface ClosedDockerfile {
  /** The text, without a final newline; same meaning as the file alone. */
  text: string;
  /** The file's escape character (its `# escape=` directive, or `\`): Kiln's appended words must use it. */
  escape: EscapeChar;
}

/** How the file ends, as Docker reads it. Lines are 0-based indexes into the file's lines. */
export type DockerfileEnd =
  | { kind: "complete"; escape: EscapeChar; lastLine: number }
  | { kind: "continuation"; escape: EscapeChar; startLine: number; parts: ContinuationPart[] }
  | { kind: "heredoc"; escape: EscapeChar; startLine: number; name: string }
  | { kind: "directiveError"; escape: EscapeChar; line: number; reason: string };

/** One line read into an instruction: its index and the text it adds (continuation character removed). */
export interface ContinuationPart {
  line: number;
  text: string;
}

export function closeDockerfile(text: string, path: string): ClosedDockerfile {
  const lines = splitLines(text);
  const end = readDockerfileEnd(text);
  const fail = (line: number, reason: string, hint: string): never => {
    throw new ValidationError("fromDockerfile file", path, `line ${line + 1}: ${reason}`, { hint, details: { path, line: line + 1 } });
  };
  switch (end.kind) {
    case "complete":
      // Blank lines after the last instruction are dropped; nothing else changes.
      return { text: end.lastLine < 0 ? "" : [...lines.slice(0, end.lastLine), trimNewline(lines[end.lastLine]!)].join("\n"), escape: end.escape };
    case "directiveError":
      return fail(end.line, end.reason, "fix the parser directive at the top of the Dockerfile (Docker refuses it too)");
    case "heredoc":
      return fail(
        end.startLine,
        `the heredoc <<${end.name} is never terminated (no line "${end.name}" follows); BuildKit refuses such a Dockerfile ("unterminated heredoc"), and Kiln's instructions after it would be read as the heredoc's content`,
        `end the heredoc with a line containing only ${end.name}`,
      );
    case "continuation": {
      // The last line that adds text ends the instruction; what later lines add is whitespace, kept.
      const parts = end.parts;
      const last = parts.findLastIndex((part) => !isBlank(part.text));
      if (last < 0) {
        return fail(
          end.startLine,
          `the file ends in a continued instruction with no text (a line ending in "${end.escape}" followed only by blank or comment lines); Docker refuses it as an unknown instruction`,
          `remove the trailing "${end.escape}" line(s) at the end of the Dockerfile`,
        );
      }
      const tail = parts
        .slice(last + 1)
        .map((part) => part.text)
        .join("");
      const closing = parts[last]!;
      if (continuationPattern(end.escape).test(closing.text + tail)) {
        return fail(
          closing.line,
          `the file's last instruction ends in the escape character "${end.escape}" at end of file; Kiln cannot end that instruction without changing it`,
          `end the Dockerfile's last line without a trailing "${end.escape}"`,
        );
      }
      const closed = trimNewline(lines[closing.line]!).replace(continuationPattern(end.escape), "$1") + tail;
      return { text: [...lines.slice(0, closing.line), closed].join("\n"), escape: end.escape };
    }
  }
}

/** The end state of a Dockerfile, following moby/buildkit's `parser.Parse`. */
export function readDockerfileEnd(text: string): DockerfileEnd {
  const lines = splitLines(text);
  const directives = new DirectiveParser();
  let lastLine = -1;
  let i = 0;
  while (i < lines.length) {
    const raw = i === 0 ? lines[0]!.replace(/^\ufeff/, "") : lines[i]!;
    const token = trimLeadingSpace(trimNewline(raw));
    try {
      directives.parseLine(token);
    } catch (error) {
      return { kind: "directiveError", escape: directives.escape, line: i, reason: (error as Error).message };
    }
    const escape = directives.escape;
    const continuation = continuationPattern(escape);
    const startLine = i;
    i++;
    if (!isBlank(token)) lastLine = startLine; // comments stay in the text; trailing blank lines do not
    let [part, ended] = trimContinuation(isComment(token) ? "" : token, continuation);
    if (ended && part === "") continue;
    const parts: ContinuationPart[] = [{ line: startLine, text: part }];
    while (!ended && i < lines.length) {
      const raw = lines[i]!;
      const token = trimNewline(raw);
      i++;
      if (isComment(raw)) continue;
      if (isBlank(token)) continue;
      [part, ended] = trimContinuation(token, continuation);
      parts.push({ line: i - 1, text: part });
    }
    const instruction = parts.map((p) => p.text).join("");
    const heredocs = heredocsOf(instruction, escape);
    if (!ended) {
      // Ends at end of file; with a heredoc, its content can never follow.
      if (heredocs.length > 0) return { kind: "heredoc", escape, startLine, name: heredocs[0]!.name };
      return { kind: "continuation", escape, startLine, parts };
    }
    lastLine = i - 1;
    for (const heredoc of heredocs) {
      let terminated = false;
      while (i < lines.length) {
        const candidate = trimNewline(lines[i++]!);
        if ((heredoc.chomp ? candidate.replace(/^\t+/, "") : candidate) === heredoc.name) {
          terminated = true;
          break;
        }
      }
      if (!terminated) return { kind: "heredoc", escape, startLine, name: heredoc.name };
      lastLine = i - 1;
    }
  }
  return { kind: "complete", escape: directives.escape, lastLine };
}

// ---- lines -------------------------------------------------------------------------------------

/** The file's lines without their `\n` (a final newline starts no line), as Docker's scanner splits them. */
function splitLines(text: string): string[] {
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  return lines;
}

/** Go's unicode.IsSpace (the parser trims and tests whitespace with it). */
const GO_SPACE = "\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const LEADING_SPACE = new RegExp(`^[${GO_SPACE}]+`);
const ONLY_SPACE = new RegExp(`^[${GO_SPACE}]*$`);
const IS_SPACE = new RegExp(`^[${GO_SPACE}]$`);
const TRIM_SPACE = new RegExp(`^[${GO_SPACE}]+|[${GO_SPACE}]+$`, "g");

function trimNewline(line: string): string {
  return line.replace(/[\r\n]+$/, "");
}
function trimLeadingSpace(line: string): string {
  return line.replace(LEADING_SPACE, "");
}
function isBlank(text: string): boolean {
  return ONLY_SPACE.test(text);
}
function isSpace(ch: string): boolean {
  return IS_SPACE.test(ch);
}
function isComment(line: string): boolean {
  return trimLeadingSpace(line).startsWith("#");
}

/** The escape character last before spaces/tabs, not preceded by another one (or alone on the line). */
function continuationPattern(escape: EscapeChar): RegExp {
  return escape === "\\" ? /([^\\])\\[ \t]*$|^\\[ \t]*$/ : /([^`])`[ \t]*$|^`[ \t]*$/;
}

function trimContinuation(line: string, pattern: RegExp): [text: string, ended: boolean] {
  return pattern.test(line) ? [line.replace(pattern, "$1"), false] : [line, true];
}

// ---- parser directives (directives.go) ---------------------------------------------------------

const DIRECTIVE = /^([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*$/;
const KNOWN_DIRECTIVES = new Set(["syntax", "escape", "check"]);

/** `# key=value` lines at the very top; the first other line (even blank) ends them. */
class DirectiveParser {
  escape: EscapeChar = "\\";
  private done = false;
  private readonly seen = new Set<string>();

  parseLine(line: string): void {
    if (this.done) return;
    if (!line.startsWith("#")) {
      this.done = true;
      return;
    }
    const match = DIRECTIVE.exec(trimLeadingSpace(line.slice(1)));
    const key = match?.[1]?.toLowerCase();
    if (match === null || key === undefined || !KNOWN_DIRECTIVES.has(key)) {
      this.done = true;
      return;
    }
    if (this.seen.has(key)) throw new Error(`only one ${key} parser directive can be used`);
    this.seen.add(key);
    if (key === "escape") {
      const value = match[2]!;
      if (value !== "`" && value !== "\\") throw new Error(`invalid escape token '${value}' does not match \` or \\`);
      this.escape = value;
    }
  }
}

// ---- instructions and their heredocs (parser.go, split_command.go) -----------------------------

interface Heredoc {
  name: string;
  chomp: boolean;
}

/** The heredocs an instruction reads after its line: only RUN, COPY and ADD (also as an ONBUILD
 * trigger) in shell form, and only when the line contains `<<`. */
function heredocsOf(line: string, escape: EscapeChar): Heredoc[] {
  if (!line.includes("<<") || !canContainHeredoc(line, escape)) return [];
  return heredocsFromLine(line);
}

function canContainHeredoc(line: string, escape: EscapeChar): boolean {
  let { command, args } = splitCommand(line, escape);
  if (command.toLowerCase() === "onbuild") {
    if (args === "") return false;
    ({ command, args } = splitCommand(args, escape));
  }
  return ["run", "copy", "add"].includes(command.toLowerCase()) && !isJsonArray(args);
}

/** `CMD --flag args`: the command word, and the arguments after the `--` flags. */
function splitCommand(line: string, escape: EscapeChar): { command: string; args: string } {
  const [command, rest] = splitOnce(line.replace(TRIM_SPACE, ""));
  if (rest === undefined) return { command, args: "" };
  return { command, args: skipBuilderFlags(rest, escape).replace(TRIM_SPACE, "") };
}

function splitOnce(line: string): [string, string | undefined] {
  const match = /[\t\v\f\r ]+/.exec(line);
  return match === null ? [line, undefined] : [line.slice(0, match.index), line.slice(match.index + match[0].length)];
}

/** What follows the leading `--flag` words (extractBuilderFlags). */
function skipBuilderFlags(line: string, escape: EscapeChar): string {
  let phase: "spaces" | "word" | "quote" = "spaces";
  let word = "";
  let quote = "";
  for (let pos = 0; pos <= line.length; pos++) {
    const ch = pos < line.length ? line[pos]! : "";
    if (phase === "spaces") {
      if (pos === line.length) break;
      if (isSpace(ch)) continue;
      if (ch !== "-" || pos + 1 === line.length || line[pos + 1] !== "-") return line.slice(pos);
      phase = "word";
    }
    if (pos === line.length) break;
    if (phase === "word") {
      if (isSpace(ch)) {
        phase = "spaces";
        if (word === "--") return line.slice(pos);
        word = "";
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        phase = "quote";
        continue;
      }
      if (ch === escape) {
        if (pos + 1 === line.length) continue;
        pos++;
      }
      word += line[pos];
      continue;
    }
    if (ch === quote) {
      phase = "word";
      continue;
    }
    if (ch === escape) {
      if (pos + 1 === line.length) {
        phase = "word";
        continue;
      }
      pos++;
    }
    word += line[pos];
  }
  return "";
}

/** The exec (JSON) form: a JSON array of strings (anything else JSON-looking is a parse error in
 * Docker, or shell form). */
function isJsonArray(args: string): boolean {
  const rest = trimLeadingSpace(args);
  if (!rest.startsWith("[")) return false;
  try {
    const value: unknown = JSON.parse(rest);
    return Array.isArray(value) && value.every((item) => typeof item === "string");
  } catch {
    return false;
  }
}

const HEREDOC_WORD = /^(\d*)<<(-?)[\t\n\f\r ]*([^<]*)$/;

/** heredocsFromLine: the line split into shell words (quotes and escapes kept), each `[n]<<[-]WORD`. */
function heredocsFromLine(line: string): Heredoc[] {
  let words: string[];
  try {
    words = new ShellLexer({ rawQuotes: true, rawEscapes: true }).words(line);
  } catch {
    return []; // Docker ignores a line its lexer cannot split here
  }
  const docs: Heredoc[] = [];
  for (const word of words) {
    const match = HEREDOC_WORD.exec(word);
    if (match === null || match[3] === "") continue;
    try {
      const names = new ShellLexer({ rawQuotes: false, rawEscapes: false }).words(match[3]!);
      if (names.length !== 1) continue;
      docs.push({ name: names[0]!, chomp: match[2] === "-" });
    } catch {
      // Docker fails to parse this line at all; the same line fails the same way after Kiln's change.
    }
  }
  return docs;
}

// ---- shell words (shell/lex.go, with no variables set and unset ones kept as written) -----------

class ShellLexerError extends Error {}

/** A port of buildkit's `shell.Lex.ProcessWords` with `\` as escape, `SkipUnsetEnv` and an empty
 * environment: enough to find the words of a line exactly as the heredoc detection sees them. */
class ShellLexer {
  private chars: string[] = [];
  private pos = 0;
  private rawEscapes: boolean;
  private readonly rawQuotes: boolean;
  /** Shared by nested scans, as in buildkit (a nested `${…}` scan resets it). */
  private readonly buffer = { text: "" };

  constructor({ rawQuotes, rawEscapes }: { rawQuotes: boolean; rawEscapes: boolean }) {
    this.rawQuotes = rawQuotes;
    this.rawEscapes = rawEscapes;
  }

  words(source: string): string[] {
    this.chars = [...source];
    this.pos = 0;
    return this.processStopOn(undefined, this.rawEscapes).words;
  }

  private peek(): string | undefined {
    return this.chars[this.pos];
  }
  private next(): string | undefined {
    return this.chars[this.pos++];
  }

  private processStopOn(stop: string | undefined, rawEscapes: boolean): { result: string; words: string[] } {
    let result = "";
    this.buffer.text = "";
    const words = new Words(this.buffer);
    const saved = this.rawEscapes;
    this.rawEscapes = rawEscapes;
    try {
      while (this.peek() !== undefined) {
        const ch = this.peek()!;
        if (stop !== undefined && ch === stop) {
          this.next();
          return { result, words: words.get() };
        }
        if (ch === "$" || ch === "<" || ch === "'" || ch === '"') {
          const text =
            ch === "$" ? this.processDollar() : ch === "<" ? this.processPossibleHeredoc() : ch === "'" ? this.processSingleQuote() : this.processDoubleQuote();
          result += text;
          if (ch === "$") words.addString(text);
          else words.addRawString(text);
          continue;
        }
        let c = this.next()!;
        if (c === "\\") {
          if (this.rawEscapes) {
            words.addRawChar(c);
            result += c;
          }
          const escaped = this.next();
          if (escaped === undefined) break;
          c = escaped;
          words.addRawChar(c);
        } else {
          words.addChar(c);
        }
        result += c;
      }
      if (stop !== undefined) throw new ShellLexerError(`unexpected end of statement while looking for matching ${stop}`);
      return { result, words: words.get() };
    } finally {
      this.rawEscapes = saved;
    }
  }

  private processSingleQuote(): string {
    const open = this.next()!;
    let result = this.rawQuotes ? open : "";
    for (;;) {
      const ch = this.next();
      if (ch === undefined) throw new ShellLexerError("unexpected end of statement while looking for matching single-quote");
      if (ch === "'") return this.rawQuotes ? result + ch : result;
      result += ch;
    }
  }

  private processDoubleQuote(): string {
    const open = this.next()!;
    let result = this.rawQuotes ? open : "";
    for (;;) {
      const ch = this.peek();
      if (ch === undefined) throw new ShellLexerError("unexpected end of statement while looking for matching double-quote");
      if (ch === '"') {
        this.next();
        return this.rawQuotes ? `${result}"` : result;
      }
      if (ch === "$") {
        result += this.processDollar();
        continue;
      }
      let c = this.next()!;
      if (c === "\\") {
        if (this.rawEscapes) result += c;
        const after = this.peek();
        if (after === undefined) continue;
        if (after === '"' || after === "$" || after === "\\") c = this.next()!;
      }
      result += c;
    }
  }

  /** `$name`, `${name}` and `${name<op>word}` with the variable unset: kept as written. */
  private processDollar(): string {
    this.next();
    if (this.peek() !== "{") {
      const name = this.processName();
      return name === "" ? "$" : `$${name}`;
    }
    this.next();
    const first = this.peek();
    if (first === undefined) throw new ShellLexerError("syntax error: missing '}'");
    if (first === "{" || first === "}" || first === ":") throw new ShellLexerError("syntax error: bad substitution");
    const name = this.processName();
    let ch = this.next();
    let chs = ch ?? "\ufffd";
    switch (ch) {
      case "}":
        return `\${${name}}`;
      case ":":
      case "+":
      case "-":
      case "?":
      case "#":
      case "%": {
        const nullIsUnset = ch === ":";
        if (nullIsUnset) {
          ch = this.next();
          chs += ch ?? "\ufffd";
        }
        const raw = ch === "#" || ch === "%";
        if (nullIsUnset && raw) throw new ShellLexerError(`unsupported modifier (${chs}) in substitution`);
        const word = this.scanNested("}", raw, "syntax error: missing '}'");
        return `\${${name}${chs}${word}}`;
      }
      case "/": {
        if (this.peek() === "/") this.next();
        const pattern = this.scanNested("/", true, "syntax error: missing '/' in ${}");
        const replacement = this.scanNested("}", true, "syntax error: missing '}'");
        return `\${${name}/${pattern}/${replacement}}`;
      }
      default:
        throw new ShellLexerError(`unsupported modifier (${chs}) in substitution`);
    }
  }

  private scanNested(stop: string, rawEscapes: boolean, atEnd: string): string {
    try {
      return this.processStopOn(stop, rawEscapes).result;
    } catch (error) {
      if (this.peek() === undefined) throw new ShellLexerError(atEnd);
      throw error;
    }
  }

  private processName(): string {
    let name = "";
    while (this.peek() !== undefined) {
      const ch = this.peek()!;
      if (name === "" && /^\p{Nd}$/u.test(ch)) {
        while (this.peek() !== undefined && /^\p{Nd}$/u.test(this.peek()!)) name += this.next();
        return name;
      }
      if (name === "" && "@*#?-$!0".includes(ch)) return this.next()!;
      if (!/^[\p{L}\p{Nd}_]$/u.test(ch)) break;
      name += this.next();
    }
    return name;
  }

  /** `<` alone, or `<<` with the spaces after it (BuildKit 1.16 reads `<< EOF` as a heredoc). */
  private processPossibleHeredoc(): string {
    this.next();
    if (this.peek() !== "<") return "<";
    this.next();
    let space = "";
    while (this.peek() === " " || this.peek() === "\t" || this.peek() === "\r") space += this.next();
    return `<<${space}`;
  }
}

/** Word splitting after expansion (wordsStruct). */
class Words {
  private readonly words: string[] = [];
  private inWord = false;
  constructor(private readonly buffer: { text: string }) {}

  addChar(ch: string): void {
    if (isSpace(ch) && this.inWord) {
      if (this.buffer.text.length !== 0) {
        this.words.push(this.buffer.text);
        this.buffer.text = "";
        this.inWord = false;
      }
    } else if (!isSpace(ch)) {
      this.addRawChar(ch);
    }
  }
  addRawChar(ch: string): void {
    this.buffer.text += ch;
    this.inWord = true;
  }
  addString(text: string): void {
    for (const ch of text) this.addChar(ch);
  }
  addRawString(text: string): void {
    this.buffer.text += text;
    this.inWord = true;
  }
  get(): string[] {
    if (this.buffer.text.length > 0) {
      this.words.push(this.buffer.text);
      this.buffer.text = "";
      this.inWord = false;
    }
    return this.words;
  }
}
