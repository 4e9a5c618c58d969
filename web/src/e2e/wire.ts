/**
 * The protobuf-like payload encoding of Olm and Megolm messages (olm.md "The Olm Message Format",
 * megolm.md "Message format"): key-value pairs, each key a varint tag whose 3 low bits give the value's
 * type (0 = varint integer, 2 = length-prefixed string) and whose other bits give the field number.
 * Varints are little-endian base-128, high bit set on every byte but the last.
 *
 * Decoding follows the Protocol Buffers rules the reference decoder (vodozemac, through prost) applies:
 * fields may come in any order, unknown fields are skipped, a repeated field keeps its last value.
 * Integers are JavaScript numbers here, so a varint above 2^53 - 1 is refused as malformed.
 */

import { MalformedError, TruncatedError } from "./errors";

export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_BYTES = 2;
export const WIRE_FIXED32 = 5;

export function encodeVarint(value: number): Uint8Array {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError("varint must be a non-negative safe integer");
  const out: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    out.push((rest % 0x80) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  out.push(rest);
  return Uint8Array.from(out);
}

/** A decoded field: a varint value or a byte string, by field number. */
export type Fields = Map<number, number | Uint8Array>;

export class Reader {
  private offset = 0;
  constructor(private readonly bytes: Uint8Array) {}

  get done(): boolean {
    return this.offset >= this.bytes.length;
  }

  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.offset >= this.bytes.length) throw new TruncatedError("truncated varint");
      const byte = this.bytes[this.offset++]!;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) {
        if (!Number.isSafeInteger(value)) throw new MalformedError("varint out of range");
        return value;
      }
      scale *= 0x80;
    }
    throw new MalformedError("varint longer than 10 bytes");
  }

  take(length: number): Uint8Array {
    if (length > this.bytes.length - this.offset) throw new TruncatedError("truncated field");
    const out = this.bytes.slice(this.offset, this.offset + length);
    this.offset += length;
    return out;
  }
}

/** Parses a whole payload into its fields; `expected` maps each known field number to its wire type. */
export function decodeFields(payload: Uint8Array, expected: ReadonlyMap<number, number>): Fields {
  const reader = new Reader(payload);
  const fields: Fields = new Map();
  while (!reader.done) {
    const tag = reader.varint();
    const field = Math.floor(tag / 8);
    const wireType = tag % 8;
    if (field === 0) throw new MalformedError("field number 0");
    let value: number | Uint8Array;
    switch (wireType) {
      case WIRE_VARINT:
        value = reader.varint();
        break;
      case WIRE_BYTES:
        value = reader.take(reader.varint());
        break;
      case WIRE_FIXED64:
        value = reader.take(8);
        break;
      case WIRE_FIXED32:
        value = reader.take(4);
        break;
      default:
        throw new MalformedError("unsupported wire type");
    }
    const want = expected.get(field);
    if (want === undefined) continue; // unknown field: skipped, as protobuf decoders do
    if (want !== wireType) throw new MalformedError("field has the wrong wire type");
    fields.set(field, value);
  }
  return fields;
}

export function bytesField(fields: Fields, field: number, length?: number): Uint8Array {
  const value = fields.get(field);
  if (!(value instanceof Uint8Array)) throw new MalformedError("missing field");
  if (length !== undefined && value.length !== length) throw new MalformedError("field has the wrong length");
  return value;
}

export function intField(fields: Fields, field: number): number {
  const value = fields.get(field);
  return typeof value === "number" ? value : 0; // an absent integer is 0, as in protobuf
}

export function tagged(tag: number, value: Uint8Array | number): Uint8Array[] {
  if (typeof value === "number") return [Uint8Array.of(tag), encodeVarint(value)];
  return [Uint8Array.of(tag), encodeVarint(value.length), value];
}
