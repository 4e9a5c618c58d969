/**
 * Base64 as Olm and vodozemac use it: the standard alphabet (RFC 4648 §4) written without padding.
 * Decoding accepts input with or without the trailing "=" (vodozemac's decoder is padding-indifferent)
 * but rejects any other character, a wrong length, and non-canonical trailing bits.
 */

import { Base64Error } from "./errors";

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const LOOKUP = new Int16Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) LOOKUP[ALPHABET.charCodeAt(i)] = i;

export function encodeBase64(bytes: Uint8Array): string {
  let out = "";
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out += ALPHABET[(n >> 18) & 63]! + ALPHABET[(n >> 12) & 63]! + ALPHABET[(n >> 6) & 63]! + ALPHABET[n & 63]!;
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i]! << 16;
    out += ALPHABET[(n >> 18) & 63]! + ALPHABET[(n >> 12) & 63]!;
  } else if (rest === 2) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8);
    out += ALPHABET[(n >> 18) & 63]! + ALPHABET[(n >> 12) & 63]! + ALPHABET[(n >> 6) & 63]!;
  }
  return out;
}

export function decodeBase64(text: string): Uint8Array {
  if (typeof text !== "string") throw new Base64Error("base64 input must be a string");
  let body = text;
  if (body.length % 4 === 0 && body.endsWith("==")) body = body.slice(0, -2);
  else if (body.length % 4 === 0 && body.endsWith("=")) body = body.slice(0, -1);
  if (body.length % 4 === 1) throw new Base64Error("invalid base64 length");
  const out = new Uint8Array(Math.floor((body.length * 3) / 4));
  let bits = 0;
  let value = 0;
  let index = 0;
  for (let i = 0; i < body.length; i++) {
    const code = body.charCodeAt(i);
    const digit = code < 128 ? (LOOKUP[code] ?? -1) : -1;
    if (digit < 0) throw new Base64Error("invalid base64 character");
    value = (value << 6) | digit;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[index++] = (value >> bits) & 0xff;
    }
    value &= (1 << bits) - 1;
  }
  if (value !== 0) throw new Base64Error("non-canonical base64 (trailing bits set)");
  return out;
}
