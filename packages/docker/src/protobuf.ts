/**
 * A minimal protobuf wire-format reader: enough to decode BuildKit's status messages without pulling
 * in a protobuf library. Unknown fields are skipped by wire type, so newer daemons stay readable.
 */

export type WireValue =
  | { wireType: 0; value: bigint }
  | { wireType: 1; value: Buffer }
  | { wireType: 2; value: Buffer }
  | { wireType: 5; value: Buffer };

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
