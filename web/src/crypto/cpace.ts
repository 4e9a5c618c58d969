/**
 * CPace, the balanced PAKE of draft-irtf-cfrg-cpace-21, cipher suite CPACE-X25519-SHA512: the browser
 * twin of src/lockstep/link/cpace.py, checked against the same vectors (vectors/cpace-x25519.json).
 *
 * Sections are cited by their titles in draft-irtf-cfrg-cpace-21. X25519 and SHA-512 are WebCrypto's;
 * written here are only the draft's string encodings, the generator string and its Elligator 2 map, and
 * the ISK. WebCrypto has every primitive CPace needs over X25519 (an X25519 with any u coordinate is
 * deriveBits with that u imported as a public key), so no curve library is needed. BigInt arithmetic is
 * not constant-time: the same limit as the Python side, bounded by a code that lives three minutes and
 * allows one attempt.
 */
import { buf, concat, equalBytes } from "./bytes";
import { pkcs8 } from "./pkcs8";

export const FIELD_SIZE_BYTES = 32; // G_X25519.field_size_bytes
const DSI = new Uint8Array([0x43, 0x50, 0x61, 0x63, 0x65, 0x32, 0x35, 0x35]); // G_X25519.DSI = b"CPace255"
const DSI_ISK = concat(DSI, new Uint8Array([0x5f, 0x49, 0x53, 0x4b])); // G.DSI || b"_ISK"
const SID_OUTPUT_LABEL = new TextEncoder().encode("CPaceSidOutput");
const SHA512_BLOCK_BYTES = 128; // H.s_in_bytes for SHA-512 ("Hash function H")
const NEUTRAL = new Uint8Array(FIELD_SIZE_BYTES); // G_X25519.I

const P = (1n << 255n) - 19n;
const A = 486662n; // Curve25519's Montgomery A (RFC 7748 §4.1)
const Z = 2n; // the non-square of "Elligator 2 reference implementation" for Curve25519
const X25519 = { name: "X25519" } as const;

export class CpaceError extends Error {
  override name = "CpaceError";
}

/** `prepend_len`: the LEB128 length of `data`, then `data` ("prepend_len function"). */
export function prependLen(data: Uint8Array): Uint8Array {
  let length = data.length;
  const encoded: number[] = [];
  for (;;) {
    encoded.push(length < 128 ? length : (length & 0x7f) + 0x80);
    length = Math.floor(length / 128);
    if (length === 0) break;
  }
  return concat(new Uint8Array(encoded), data);
}

/** `lv_cat`: each part with its length prepended ("lv_cat function"). */
export function lvCat(...parts: Uint8Array[]): Uint8Array {
  return concat(...parts.map(prependLen));
}

/** The draft's `lexiographically_larger` ("Definitions for lexiographical ordering"). */
function lexicographicallyLarger(bytes1: Uint8Array, bytes2: Uint8Array): boolean {
  const minLength = Math.min(bytes1.length, bytes2.length);
  for (let m = 0; m < minLength; m++) {
    const a = bytes1[m] ?? 0;
    const b = bytes2[m] ?? 0;
    if (a > b) return true;
    if (a < b) return false;
  }
  return bytes1.length > bytes2.length;
}

/** `o_cat` ("Definitions for ordered concatenation"). */
export function oCat(bytes1: Uint8Array, bytes2: Uint8Array): Uint8Array {
  const oc = new Uint8Array([0x6f, 0x63]);
  return lexicographicallyLarger(bytes1, bytes2) ? concat(oc, bytes1, bytes2) : concat(oc, bytes2, bytes1);
}

/** The initiator-responder transcript ("Definitions for transcript_ir function"). */
export function transcriptIr(ya: Uint8Array, adA: Uint8Array, yb: Uint8Array, adB: Uint8Array): Uint8Array {
  return concat(lvCat(ya, adA), lvCat(yb, adB));
}

/** The symmetric transcript ("Definitions for transcript_oc function"). */
export function transcriptOc(ya: Uint8Array, adA: Uint8Array, yb: Uint8Array, adB: Uint8Array): Uint8Array {
  return oCat(lvCat(ya, adA), lvCat(yb, adB));
}

/** `generator_string(G.DSI, PRS, CI, sid, H.s_in_bytes)` ("Common function for computing generators"). */
export function generatorString(prs: Uint8Array, ci: Uint8Array, sid: Uint8Array): Uint8Array {
  const lenZpad = Math.max(0, SHA512_BLOCK_BYTES - 1 - prependLen(prs).length - prependLen(DSI).length);
  return lvCat(DSI, prs, new Uint8Array(lenZpad), ci, sid);
}

async function sha512(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-512", buf(data)));
}

function mod(x: bigint): bigint {
  const r = x % P;
  return r < 0n ? r + P : r;
}

function power(base: bigint, exponent: bigint): bigint {
  let result = 1n;
  let b = mod(base);
  let e = exponent;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % P;
    b = (b * b) % P;
    e >>= 1n;
  }
  return result;
}

function inverse(x: bigint): bigint {
  return power(x, P - 2n); // Fermat: x^(p-2) = 1/x for x != 0 mod p
}

function littleEndian(bytes: Uint8Array): bigint {
  let value = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[i] ?? 0);
  return value;
}

function encodeUCoordinate(u: bigint): Uint8Array {
  const out = new Uint8Array(FIELD_SIZE_BYTES);
  let value = u;
  for (let i = 0; i < FIELD_SIZE_BYTES; i++) {
    out[i] = Number(value & 0xffn);
    value >>= 8n;
  }
  return out;
}

/** `map_to_curve_elligator2` for Curve25519, u coordinate only ("Elligator 2 reference implementation",
 * RFC 9380 §6.7.1): v = -A / (1 + Z r²), ε = χ(v³ + A v² + v), u = ε v - (1 - ε) A / 2. */
function elligator2(r: bigint): Uint8Array {
  const v = mod(-A * inverse(mod(1n + Z * r * r)));
  const epsilon = power(mod(v * v * v + A * v * v + v), (P - 1n) / 2n); // 0, 1 or p - 1
  const u = mod(epsilon * v - mod(1n - epsilon) * A * inverse(2n));
  return encodeUCoordinate(u);
}

/** `G_X25519.calculate_generator(H, PRS, CI, sid)`: SHA-512 of the generator string cut to 32 bytes,
 * decodeUCoordinate (RFC 7748 §5: bit 255 cleared), then Elligator 2. */
export async function calculateGenerator(prs: Uint8Array, ci: Uint8Array, sid: Uint8Array): Promise<Uint8Array> {
  const genStrHash = (await sha512(generatorString(prs, ci, sid))).slice(0, FIELD_SIZE_BYTES);
  return elligator2(littleEndian(genStrHash) & ((1n << 255n) - 1n));
}

/** Imports 32 scalar bytes as an X25519 private key (PKCS#8, RFC 8410): for the draft's vectors. */
export async function importScalar(scalar: Uint8Array): Promise<CryptoKey> {
  if (scalar.length !== FIELD_SIZE_BYTES) throw new CpaceError("a CPace X25519 scalar is 32 bytes");
  return crypto.subtle.importKey("pkcs8", pkcs8("X25519", scalar), X25519, false, ["deriveBits"]);
}

/** `G.sample_scalar()`: a fresh non-extractable X25519 private key ("Nonce values": never reused). */
export async function sampleScalar(): Promise<CryptoKey> {
  const pair = (await crypto.subtle.generateKey(X25519, false, ["deriveBits"])) as CryptoKeyPair;
  return pair.privateKey;
}

/** `G_X25519.scalar_mult_vfy(y, g) = X25519(y, g)`; G.I (all zero) where WebCrypto refuses a
 * low-order point's all-zero result (the WebCrypto spec makes that an OperationError). */
export async function scalarMultVfy(scalar: CryptoKey, point: Uint8Array): Promise<Uint8Array> {
  if (point.length !== FIELD_SIZE_BYTES) throw new CpaceError("a CPace X25519 share is 32 bytes");
  try {
    const publicKey = await crypto.subtle.importKey("raw", buf(point), X25519, false, []);
    const out = await crypto.subtle.deriveBits({ name: "X25519", public: publicKey }, scalar, 256);
    return new Uint8Array(out);
  } catch {
    return NEUTRAL.slice();
  }
}

/** The intermediate session key from K and a transcript ("CPace protocol instructions"). */
export async function isk(sid: Uint8Array, k: Uint8Array, transcript: Uint8Array): Promise<Uint8Array> {
  return sha512(concat(lvCat(DSI_ISK, sid, k), transcript));
}

/** `sid_output = H.hash(b"CPaceSidOutput" || transcript)` ("Calculating a session identifier ..."). */
export async function sidOutput(transcript: Uint8Array): Promise<Uint8Array> {
  return sha512(concat(SID_OUTPUT_LABEL, transcript));
}

export interface Share {
  y: Uint8Array;
  ad: Uint8Array;
}

/** One party between sending its share and receiving the peer's; `initiator` is A. */
export interface Party {
  scalar: CryptoKey;
  sid: Uint8Array;
  share: Share;
  initiator: boolean;
}

/** `g = calculate_generator(H, PRS, CI, sid); Y = scalar_mult(y, g)` ("CPace protocol instructions"). */
export async function start(
  prs: Uint8Array,
  ci: Uint8Array,
  sid: Uint8Array,
  ad: Uint8Array,
  initiator: boolean,
  scalar?: CryptoKey,
): Promise<Party> {
  const y = scalar ?? (await sampleScalar());
  const share = await scalarMultVfy(y, await calculateGenerator(prs, ci, sid));
  if (equalBytes(share, NEUTRAL)) throw new CpaceError("the generator is the neutral element");
  return { scalar: y, sid, share: { y: share, ad }, initiator };
}

/** `K = scalar_mult_vfy(y, Y_peer)`, abort if K = G.I, else the ISK over transcript_ir. K stays here. */
export async function finish(party: Party, peer: Share): Promise<Uint8Array> {
  if (peer.y.length !== FIELD_SIZE_BYTES) throw new CpaceError("a CPace X25519 share is 32 bytes");
  const k = await scalarMultVfy(party.scalar, peer.y);
  if (equalBytes(k, NEUTRAL)) throw new CpaceError("the peer's share is a low-order point");
  const [a, b] = party.initiator ? [party.share, peer] : [peer, party.share];
  return isk(party.sid, k, transcriptIr(a.y, a.ad, b.y, b.ad));
}
