/**
 * Deterministic tar headers for image layers: ustar, with a PAX `path`/`linkpath` record when a name
 * is not ASCII or does not fit (as Go's archive/tar and tar-stream do). Every field that could vary
 * between machines is fixed: mtime is the build epoch, uid/gid are 0 unless a `--chown`-like owner
 * is given, user and group names are empty, no device numbers, no access/change times.
 */
import { nameBytes } from "@kiln/core/plugin";

export type EntryType = "file" | "directory" | "symlink";

export interface LayerEntryHeader {
  /** Path in the layer, relative (no leading `/`), no trailing slash. */
  name: string;
  type: EntryType;
  mode: number;
  size?: number;
  linkname?: string;
  uid: number;
  gid: number;
  mtime: number;
}

const BLOCK = 512;
export const END_OF_ARCHIVE: Buffer = Buffer.alloc(2 * BLOCK);
const ZEROS = Buffer.alloc(BLOCK);
const TYPEFLAG: Record<EntryType | "pax", number> = { file: 0x30, symlink: 0x32, directory: 0x35, pax: 0x78 };

export function encodeEntryHeader(header: LayerEntryHeader): Buffer {
  const size = header.type === "file" ? (header.size ?? 0) : 0;
  const name = nameBytes(header.name);
  const link = header.linkname ? nameBytes(header.linkname) : undefined;
  const plain = ustar(name, header.type, header, size, link);
  if (plain) return plain;
  const records = Buffer.concat([paxRecord("path", name), ...(link ? [paxRecord("linkpath", link)] : [])]);
  const placeholder = Buffer.from("PaxHeader");
  const paxHeader = ustar(placeholder, "pax", header, records.length, undefined)!;
  const entry = ustar(placeholder, header.type, header, size, link && link.length <= 100 && isAscii(link) ? link : undefined)!;
  return Buffer.concat([paxHeader, records, padding(records.length), entry]);
}

export function padding(size: number): Buffer {
  const rest = size % BLOCK;
  return rest === 0 ? ZEROS.subarray(0, 0) : ZEROS.subarray(0, BLOCK - rest);
}

function ustar(name: Buffer, type: EntryType | "pax", h: LayerEntryHeader, size: number, link: Buffer | undefined): Buffer | undefined {
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
  if (link !== undefined && (link.length > 100 || !isAscii(link))) return undefined;
  const block = Buffer.alloc(BLOCK);
  rest.copy(block, 0);
  block.write(octal(h.mode & 0o7777, 7), 100, "latin1");
  block.write(octal(type === "pax" ? 0 : h.uid, 7), 108, "latin1");
  block.write(octal(type === "pax" ? 0 : h.gid, 7), 116, "latin1");
  block.write(octal(size, 11), 124, "latin1");
  block.write(octal(h.mtime, 11), 136, "latin1");
  block[156] = TYPEFLAG[type];
  link?.copy(block, 157);
  block.write("ustar\0", 257, "latin1");
  block.write("00", 263, "latin1");
  block.write(octal(0, 7), 329, "latin1");
  block.write(octal(0, 7), 337, "latin1");
  prefix.copy(block, 345);
  block.write(`${octal(checksum(block), 6)} `, 148, "latin1");
  return block;
}

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, "latin1"), value, Buffer.from("\n")]);
  let length = body.length + String(body.length).length;
  if (String(length).length !== String(body.length).length) length = body.length + String(length).length;
  return Buffer.concat([Buffer.from(String(length), "latin1"), body]);
}

function isAscii(bytes: Buffer): boolean {
  for (const b of bytes) if (b >= 0x80) return false;
  return true;
}

/** `width` octal digits followed by NUL (the field's last byte). */
function octal(value: number, width: number): string {
  const digits = value.toString(8);
  if (digits.length > width) throw new RangeError(`tar field value ${value} does not fit`);
  return `${"0".repeat(width - digits.length)}${digits}\0`;
}

function checksum(block: Buffer): number {
  let sum = 8 * 32;
  for (let i = 0; i < 148; i++) sum += block[i]!;
  for (let i = 156; i < BLOCK; i++) sum += block[i]!;
  return sum;
}
