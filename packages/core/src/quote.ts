/**
 * Quoting for the Dockerfile renderer. Docker applies its own word processing (variable substitution
 * with `$`, quote removal, `\` escapes) to ENV, LABEL, WORKDIR, USER and COPY — even to COPY's JSON
 * form — but never to the exec (JSON) form of RUN. So:
 * - exec-form argv (`RUN [...]`) is plain JSON: the values reach the process unchanged;
 * - words Docker processes are escaped with `\` so they come out literal;
 * - everything stays on one line (validation rejects line breaks where a value cannot hold them, and
 *   JSON escapes them where it can).
 */

/** Characters JSON.stringify leaves raw that some line readers treat as line breaks. */
const JSON_LINE_BREAKS = /[\u0085\u2028\u2029]/g;

/** A JSON array of strings, on one line, ASCII line breaks and Unicode separators escaped. */
export function jsonArray(values: readonly string[]): string {
  return JSON.stringify(values).replace(JSON_LINE_BREAKS, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** Docker's escape character: `\` unless a `# escape=\`` parser directive makes it a backtick. */
export type EscapeChar = "\\" | "`";

/** A word Docker runs through variable substitution and quote removal, escaped to stay literal
 * (`$`, quotes and the escape character get the escape character in front; with a backtick escape a
 * `\` is an ordinary character). Used for COPY sources and destinations. */
export function escapeWord(value: string, escape: EscapeChar = "\\"): string {
  return value.replace(escape === "\\" ? /[\\"'$]/g : /[`"'$]/g, `${escape}$&`);
}

/** A double-quoted word for ENV/LABEL/WORKDIR: inside double quotes Docker honours the escape
 * character before `"`, `$` and itself. */
export function doubleQuote(value: string, escape: EscapeChar = "\\"): string {
  return `"${value.replace(escape === "\\" ? /[\\"$]/g : /[`"$]/g, `${escape}$&`)}"`;
}
