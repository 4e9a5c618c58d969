/**
 * Base64 without padding in the two alphabets Lockstep meets (RFC 4648), one codec for both:
 *
 *   b64uEncode / b64uDecode        base64url (§5), everything Lockstep itself writes. Strict as linking.md §2
 *                                  requires: padding, whitespace and characters outside the URL-safe alphabet
 *                                  are rejected (B64uError).
 *   encodeBase64 / decodeBase64    the standard alphabet (§4), as Olm and vodozemac write keys and messages.
 *                                  Decoding also accepts trailing "=" padding (vodozemac's decoder is
 *                                  padding-indifferent); anything else wrong is a Base64Error (an E2EError).
 *
 * Both decoders reject an impossible length and non-canonical trailing bits.
 */
import { Base64Error } from "../e2e/errors";

export class B64uError extends Error {
  override name = "B64uError";
}

interface Alphabet {
  name: string;
  digits: string;
  lookup: Int16Array;
  error: new (message: string) => Error;
}

function alphabet(name: string, digits: string, error: new (message: string) => Error): Alphabet {
  const lookup = new Int16Array(128).fill(-1);
  for (let i = 0; i < digits.length; i++) lookup[digits.charCodeAt(i)] = i;
  return { name, digits, lookup, error };
}

const LETTERS_AND_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const URL_SAFE = alphabet("base64url", LETTERS_AND_DIGITS + "-_", B64uError);
const STANDARD = alphabet("base64", LETTERS_AND_DIGITS + "+/", Base64Error);

function encode(bytes: Uint8Array, { digits }: Alphabet): string {
  const digit = (n: number, shift: number): string => digits[(n >> shift) & 63]!;
  let out = "";
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out += digit(n, 18) + digit(n, 12) + digit(n, 6) + digit(n, 0);
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i]! << 16;
    out += digit(n, 18) + digit(n, 12);
  } else if (rest === 2) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8);
    out += digit(n, 18) + digit(n, 12) + digit(n, 6);
  }
  return out;
}

function decode(text: string, { name, lookup, error }: Alphabet): Uint8Array {
  if (text.length % 4 === 1) throw new error(`invalid ${name} length`);
  const out = new Uint8Array(Math.floor((text.length * 3) / 4));
  let bits = 0;
  let value = 0;
  let index = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    const digit = code < 128 ? (lookup[code] ?? -1) : -1;
    if (digit < 0) throw new error(`invalid ${name} character`);
    value = (value << 6) | digit;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[index++] = (value >> bits) & 0xff;
    }
    value &= (1 << bits) - 1;
  }
  if (value !== 0) throw new error(`non-canonical ${name} (trailing bits set)`);
  return out;
}

export function b64uEncode(bytes: Uint8Array): string {
  return encode(bytes, URL_SAFE);
}

export function b64uDecode(text: string): Uint8Array {
  return decode(text, URL_SAFE);
}

export function encodeBase64(bytes: Uint8Array): string {
  return encode(bytes, STANDARD);
}

export function decodeBase64(text: string): Uint8Array {
  if (typeof text !== "string") throw new Base64Error("base64 input must be a string");
  let body = text;
  if (body.length % 4 === 0 && body.endsWith("==")) body = body.slice(0, -2);
  else if (body.length % 4 === 0 && body.endsWith("=")) body = body.slice(0, -1);
  return decode(body, STANDARD);
}
