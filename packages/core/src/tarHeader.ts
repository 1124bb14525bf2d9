/**
 * Tar headers for the build context, written byte for byte as tar-stream 3 writes them (ustar; a name
 * that is not ASCII or too long, or a long link target, goes into a PAX `path`/`linkpath` record
 * behind a `PaxHeader` entry), so contexts are the same bytes they always were — plus one thing
 * tar-stream cannot do: a name that is not valid UTF-8 (rawNames.ts) is written with its raw bytes in
 * the PAX record, as the docker CLI (Go's archive/tar) does, and moby reads it back byte-exact.
 *
 * Context headers are deterministic: mtime 0, uid/gid 0, no user or group names.
 */
import { nameBytes } from "./rawNames.js";

export type TarEntryType = "file" | "directory" | "symlink";

export interface TarHeader {
  /** Path in the archive (escaped bytes allowed, see rawNames.ts); no trailing slash. */
  name: string;
  type: TarEntryType;
  mode: number;
  /** Bytes of content (files only). */
  size?: number;
  /** Link target (symlinks only). */
  linkname?: string;
}

const BLOCK = 512;
/** Two zero blocks end an archive. */
export const END_OF_ARCHIVE: Buffer = Buffer.alloc(2 * BLOCK);
const ZEROS = Buffer.alloc(BLOCK);
const TYPEFLAG: Record<TarEntryType | "pax-header", number> = { file: 0x30, symlink: 0x32, directory: 0x35, "pax-header": 0x78 };

/** The header block(s) of one entry. */
export function encodeHeader(header: TarHeader): Buffer {
  const size = header.type === "file" ? (header.size ?? 0) : 0;
  const name = nameBytes(header.name);
  const link = header.linkname ? nameBytes(header.linkname) : undefined;
  const plain = ustar(name, header.type, header.mode, size, link);
  if (plain !== undefined) return plain;
  // tar-stream's PAX form: a `PaxHeader` entry holding path (and linkpath), then the entry itself
  // named `PaxHeader` (its real name is the record's).
  const records = Buffer.concat([paxRecord("path", name), ...(link ? [paxRecord("linkpath", link)] : [])]);
  const placeholder = Buffer.from("PaxHeader");
  const paxLink = link ? placeholder : undefined;
  const paxHeader = ustar(placeholder, "pax-header", header.mode, records.length, paxLink)!;
  const entry = ustar(placeholder, header.type, header.mode, size, paxLink)!;
  return Buffer.concat([paxHeader, records, padding(records.length), entry]);
}

/** Zero bytes that complete a body of `size` bytes to a whole block. */
export function padding(size: number): Buffer {
  const rest = size % BLOCK;
  return rest === 0 ? ZEROS.subarray(0, 0) : ZEROS.subarray(0, BLOCK - rest);
}

/** One ustar block, or undefined when the name is not ASCII or does not fit, or the link does not fit:
 * tar-stream's `encode` (directory names get no trailing slash; a short non-ASCII link target is
 * written in the block as it is). */
function ustar(name: Buffer, type: TarEntryType | "pax-header", mode: number, size: number, link: Buffer | undefined): Buffer | undefined {
  if (!isAscii(name)) return undefined;
  let prefix: Buffer = Buffer.alloc(0);
  let rest: Buffer = name;
  while (rest.length > 100) {
    const slash = rest.indexOf(0x2f);
    if (slash === -1) return undefined;
    prefix = prefix.length > 0 ? Buffer.concat([prefix, Buffer.from("/"), rest.subarray(0, slash)]) : rest.subarray(0, slash);
    rest = rest.subarray(slash + 1);
  }
  if (rest.length > 100 || prefix.length > 155) return undefined;
  if (link !== undefined && link.length > 100) return undefined;

  const block = Buffer.alloc(BLOCK);
  rest.copy(block, 0);
  block.write(octal(mode & 0o7777, 6), 100, "latin1");
  block.write(octal(0, 6), 108, "latin1"); // uid
  block.write(octal(0, 6), 116, "latin1"); // gid
  writeSize(block, size);
  block.write(octal(0, 11), 136, "latin1"); // mtime
  block[156] = TYPEFLAG[type];
  link?.copy(block, 157);
  block.write("ustar\0", 257, "latin1");
  block.write("00", 263, "latin1");
  block.write(octal(0, 6), 329, "latin1"); // devmajor
  block.write(octal(0, 6), 337, "latin1"); // devminor
  prefix.copy(block, 345);
  block.write(octal(checksum(block), 6), 148, "latin1");
  return block;
}

/** ` <key>=<value>\n` preceded by the record's own decimal length (which counts itself). */
function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, "latin1"), value, Buffer.from("\n")]);
  const len = body.length;
  let digits = Math.floor(Math.log(len) / Math.log(10)) + 1;
  if (len + digits >= 10 ** digits) digits++;
  return Buffer.concat([Buffer.from(String(len + digits), "latin1"), body]);
}

function isAscii(bytes: Buffer): boolean {
  for (const b of bytes) if (b >= 0x80) return false;
  return true;
}

/** `n` octal digits and a space (all sevens when the value does not fit). */
function octal(value: number, n: number): string {
  const digits = value.toString(8);
  if (digits.length > n) return `${"7".repeat(n)} `;
  return `${"0".repeat(n - digits.length)}${digits} `;
}

/** Octal in 11 digits, or base-256 for sizes that do not fit (8 GiB and up). */
function writeSize(block: Buffer, size: number): void {
  if (size.toString(8).length <= 11) {
    block.write(octal(size, 11), 124, "latin1");
    return;
  }
  block[124] = 0x80;
  let rest = size;
  for (let i = 11; i > 0; i--) {
    block[124 + i] = rest & 0xff;
    rest = Math.floor(rest / 0x100);
  }
}

function checksum(block: Buffer): number {
  let sum = 8 * 32;
  for (let i = 0; i < 148; i++) sum += block[i]!;
  for (let i = 156; i < BLOCK; i++) sum += block[i]!;
  return sum;
}
