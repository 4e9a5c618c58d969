/**
 * Megolm session data formats (megolm.md "Session sharing format", "Session export format"):
 *
 *   session key (shared over Olm):  0x02 ∥ i (u32 big-endian) ∥ R(i,0..3) (128) ∥ K_pub (32) ∥ signature (64)
 *   exported session key:           0x01 ∥ i (u32 big-endian) ∥ R(i,0..3) (128) ∥ K_pub (32)
 *
 * The signature is K's Ed25519 signature over all bytes before it. Both travel as unpadded base64.
 */

import { decodeBase64, encodeBase64 } from "../crypto/base64";
import { MalformedError, SignatureError, TruncatedError, VersionError } from "./errors";
import { checkEd25519PublicKey, concatBytes, ed25519Verify } from "./primitives";
import { RATCHET_LENGTH } from "./megolmRatchet";

export const SESSION_KEY_VERSION = 2;
export const EXPORTED_SESSION_KEY_VERSION = 1;
const BODY_LENGTH = 1 + 4 + RATCHET_LENGTH + 32; // 165
const SIGNED_LENGTH = BODY_LENGTH + 64; // 229

export interface SessionKeyData {
  readonly index: number;
  readonly ratchet: Uint8Array;
  readonly signingKey: Uint8Array;
}

export function encodeSessionKeyBody(version: number, data: SessionKeyData): Uint8Array {
  const index = new Uint8Array(4);
  new DataView(index.buffer).setUint32(0, data.index);
  return concatBytes(Uint8Array.of(version), index, data.ratchet, data.signingKey);
}

async function decodeBody(bytes: Uint8Array, version: number, length: number): Promise<SessionKeyData> {
  if (bytes.length < 1) throw new TruncatedError("empty session key");
  if (bytes[0] !== version) throw new VersionError("unexpected session key version");
  if (bytes.length < length) throw new TruncatedError("session key too short");
  if (bytes.length > length) throw new MalformedError("session key too long");
  const index = new DataView(bytes.buffer, bytes.byteOffset + 1, 4).getUint32(0);
  const ratchet = bytes.slice(5, 5 + RATCHET_LENGTH);
  const signingKey = bytes.slice(5 + RATCHET_LENGTH, BODY_LENGTH);
  await checkEd25519PublicKey(signingKey);
  return { index, ratchet, signingKey };
}

/** Decodes and verifies a signed session key (base64 or bytes). */
export async function decodeSessionKey(key: string | Uint8Array): Promise<SessionKeyData> {
  const bytes = typeof key === "string" ? decodeBase64(key) : key;
  const data = await decodeBody(bytes, SESSION_KEY_VERSION, SIGNED_LENGTH);
  const ok = await ed25519Verify(data.signingKey, bytes.subarray(0, BODY_LENGTH), bytes.subarray(BODY_LENGTH));
  if (!ok) throw new SignatureError("session key signature does not verify");
  return data;
}

/** Decodes an exported (unsigned) session key (base64 or bytes). */
export async function decodeExportedSessionKey(key: string | Uint8Array): Promise<SessionKeyData> {
  const bytes = typeof key === "string" ? decodeBase64(key) : key;
  return decodeBody(bytes, EXPORTED_SESSION_KEY_VERSION, BODY_LENGTH);
}

export function encodeExportedSessionKey(data: SessionKeyData): string {
  return encodeBase64(encodeSessionKeyBody(EXPORTED_SESSION_KEY_VERSION, data));
}
