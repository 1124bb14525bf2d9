/**
 * A minimal protobuf wire-format reader and writer: enough to decode BuildKit's status messages and
 * to answer the daemon's session calls (secrets, health) without pulling in a protobuf library.
 * Unknown fields are skipped by wire type, so newer daemons stay readable.
 */

export type WireValue = { wireType: 0; value: bigint } | { wireType: 1; value: Buffer } | { wireType: 2; value: Buffer } | { wireType: 5; value: Buffer };

export interface WireField {
  field: number;
  wire: WireValue;
}

/** Reads a base-128 varint at `offset`; returns the value and the offset after it. */
function readVarint(buf: Buffer, offset: number): [bigint, number] {
  let result = 0n;
  let shift = 0n;
  for (let i = offset; i < buf.length; i++) {
    const byte = buf[i]!;
    result |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return [result, i + 1];
    shift += 7n;
    if (shift > 63n) throw new Error("protobuf: varint too long");
  }
  throw new Error("protobuf: truncated varint");
}

/** Iterates the top-level fields of one message. Throws on malformed input. */
export function* readFields(buf: Buffer): Generator<WireField> {
  let offset = 0;
  while (offset < buf.length) {
    const [key, afterKey] = readVarint(buf, offset);
    const field = Number(key >> 3n);
    const wireType = Number(key & 7n);
    offset = afterKey;
    switch (wireType) {
      case 0: {
        const [value, next] = readVarint(buf, offset);
        offset = next;
        yield { field, wire: { wireType: 0, value } };
        break;
      }
      case 1:
        if (offset + 8 > buf.length) throw new Error("protobuf: truncated fixed64");
        yield { field, wire: { wireType: 1, value: buf.subarray(offset, offset + 8) } };
        offset += 8;
        break;
      case 2: {
        const [length, next] = readVarint(buf, offset);
        const end = next + Number(length);
        if (end > buf.length) throw new Error("protobuf: truncated length-delimited field");
        yield { field, wire: { wireType: 2, value: buf.subarray(next, end) } };
        offset = end;
        break;
      }
      case 5:
        if (offset + 4 > buf.length) throw new Error("protobuf: truncated fixed32");
        yield { field, wire: { wireType: 5, value: buf.subarray(offset, offset + 4) } };
        offset += 4;
        break;
      default:
        throw new Error(`protobuf: unsupported wire type ${wireType}`);
    }
  }
}

export function asString(wire: WireValue): string {
  return wire.wireType === 2 ? wire.value.toString("utf8") : "";
}

export function asBytes(wire: WireValue): Buffer {
  return wire.wireType === 2 ? wire.value : Buffer.alloc(0);
}

export function asNumber(wire: WireValue): number {
  return wire.wireType === 0 ? Number(BigInt.asIntN(64, wire.value)) : 0;
}

export function asBool(wire: WireValue): boolean {
  return wire.wireType === 0 && wire.value !== 0n;
}

// ---- Writing -------------------------------------------------------------------------------

const WIRE_VARINT = 0;
const WIRE_LENGTH_DELIMITED = 2;

/** A base-128 varint; negative numbers are written as their 64-bit two's complement (as protobuf does for int32/int64). */
export function encodeVarint(value: number | bigint): Buffer {
  let rest = BigInt.asUintN(64, BigInt(value));
  const bytes: number[] = [];
  do {
    const low = Number(rest & 0x7fn);
    rest >>= 7n;
    bytes.push(rest === 0n ? low : low | 0x80);
  } while (rest !== 0n);
  return Buffer.from(bytes);
}

function fieldKey(field: number, wireType: number): Buffer {
  if (!Number.isInteger(field) || field < 1 || field > 0x1fffffff) throw new RangeError(`protobuf: invalid field number ${field}`);
  return encodeVarint((BigInt(field) << 3n) | BigInt(wireType));
}

/** A varint field (int32, int64, uint*, bool, enum). */
export function varintField(field: number, value: number | bigint | boolean): Buffer {
  return Buffer.concat([fieldKey(field, WIRE_VARINT), encodeVarint(typeof value === "boolean" ? (value ? 1 : 0) : value)]);
}

/** A length-delimited field (string, bytes, embedded message); strings are written as UTF-8. */
export function lengthDelimitedField(field: number, value: Buffer | Uint8Array | string): Buffer {
  const bytes = typeof value === "string" ? Buffer.from(value, "utf8") : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  return Buffer.concat([fieldKey(field, WIRE_LENGTH_DELIMITED), encodeVarint(bytes.length), bytes]);
}
