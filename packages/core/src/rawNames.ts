/**
 * File names that are not valid UTF-8 (a Latin-1 `conf\xe9.ini`), carried byte-exact through Kiln's
 * string paths the way Python's `surrogateescape` does: every byte that is not part of a valid UTF-8
 * sequence becomes the lone surrogate U+DC00 + byte (U+DC80..U+DCFF). Valid UTF-8 never decodes to a
 * lone surrogate, so the mapping is one-to-one; a name that is valid UTF-8 is the same string as ever.
 *
 * Validity is Go's (`utf8.DecodeRune`, which the docker CLI and moby use): each byte of an invalid
 * sequence is invalid on its own, so `\xe2\x82x` is two escaped bytes and an `x` (Node's decoder
 * would make one U+FFFD of the first two).
 *
 * Where such a string meets the file system it becomes a Buffer again (`hostPathForFs`); where it is
 * hashed or put in a tar header, its bytes (`nameBytes`); where `.dockerignore` patterns match it,
 * each escaped byte is U+FFFD (`matchForm`), which is what Go's regexp sees for an invalid byte.
 */

const ESCAPE_BASE = 0xdc00;

/** Whether the string holds escaped bytes (is not well-formed UTF-16). */
export function hasRawBytes(s: string): boolean {
  return !(s as unknown as { isWellFormed(): boolean }).isWellFormed();
}

/** The name's bytes as a string: UTF-8 where valid, escaped bytes elsewhere. */
export function decodeName(bytes: Uint8Array): string {
  let out = "";
  let run = 0; // start of the current valid stretch
  let i = 0;
  while (i < bytes.length) {
    const width = validSequenceLength(bytes, i);
    if (width > 0) {
      i += width;
      continue;
    }
    if (run < i) out += Buffer.from(bytes.buffer, bytes.byteOffset + run, i - run).toString("utf8");
    out += String.fromCharCode(ESCAPE_BASE + bytes[i]!);
    i += 1;
    run = i;
  }
  if (run < bytes.length) out += Buffer.from(bytes.buffer, bytes.byteOffset + run, bytes.length - run).toString("utf8");
  return out;
}

/** The bytes a name string stands for (the inverse of `decodeName`). */
export function nameBytes(s: string): Buffer {
  if (!hasRawBytes(s)) return Buffer.from(s, "utf8");
  const parts: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const unit = s.charCodeAt(i);
    if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < s.length) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        for (const b of Buffer.from(s.slice(i, i + 2), "utf8")) parts.push(b);
        i++;
        continue;
      }
    }
    if (unit >= 0xdc80 && unit <= 0xdcff) parts.push(unit - ESCAPE_BASE);
    else for (const b of Buffer.from(s[i]!, "utf8")) parts.push(b);
  }
  return Buffer.from(parts);
}

/** What `fs` calls take for this path: the string itself, or its bytes when it holds escaped bytes. */
export function hostPathForFs(path: string): string | Buffer {
  return hasRawBytes(path) ? nameBytes(path) : path;
}

/** A name for people to read: each escaped byte as `\xNN` (as Go's %q shows it); other text as is. */
export function displayName(s: string): string {
  if (!hasRawBytes(s)) return s;
  return s.replace(/[\ud800-\udbff][\udc00-\udfff]|[\udc80-\udcff]/g, (unit) =>
    unit.length === 2 ? unit : `\\x${(unit.charCodeAt(0) - ESCAPE_BASE).toString(16).padStart(2, "0")}`,
  );
}

/** A name quoted for a message (JSON string syntax), each escaped byte shown as `\xNN`. */
export function quoteName(s: string): string {
  if (!hasRawBytes(s)) return JSON.stringify(s);
  const parts = s.split(/((?<![\ud800-\udbff])[\udc80-\udcff])/);
  return `"${parts.map((part, i) => (i % 2 === 1 ? `\\x${(part.charCodeAt(0) - ESCAPE_BASE).toString(16).padStart(2, "0")}` : JSON.stringify(part).slice(1, -1))).join("")}"`;
}

/** The form `.dockerignore` patterns are matched against: each escaped byte as U+FFFD. */
export function matchForm(s: string): string {
  return (s as unknown as { toWellFormed(): string }).toWellFormed();
}

/** Length of the valid UTF-8 sequence at `i`, or 0 when the byte there starts none. */
function validSequenceLength(b: Uint8Array, i: number): number {
  const c = b[i]!;
  if (c < 0x80) return 1;
  const cont = (k: number, lo = 0x80, hi = 0xbf) => i + k < b.length && b[i + k]! >= lo && b[i + k]! <= hi;
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c === 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;
  if ((c >= 0xe1 && c <= 0xec) || c === 0xee || c === 0xef) return cont(1) && cont(2) ? 3 : 0;
  if (c === 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0;
  if (c === 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xf1 && c <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c === 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}
