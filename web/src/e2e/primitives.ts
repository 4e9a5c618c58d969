/**
 * The WebCrypto primitives Olm and Megolm are built from: HMAC-SHA-256 (RFC 2104), HKDF-SHA-256
 * (RFC 5869), AES-256-CBC with PKCS#7 padding, X25519 (RFC 7748) and Ed25519 (RFC 8032). Nothing here
 * is hand-rolled: WebCrypto's HKDF expresses every derivation Olm needs (a salt of one zero byte is,
 * after HMAC's key padding, the RFC's "default salt" of HashLen zeros). The one exception to WebCrypto
 * is `hmacSha256Sync`, the audited @noble/hashes HMAC-SHA-256 run in-thread for Olm's chain ratchet.
 *
 * Private X25519/Ed25519 keys live as non-extractable CryptoKeys; only their public halves are bytes. When
 * the app stores them, they are kept wrapped (../crypto/keep.ts, ../store/atRest.ts).
 */

import { hmac as nobleHmac } from "@noble/hashes/hmac.js";
import { sha256 as nobleSha256 } from "@noble/hashes/sha2.js";
import { b64uDecode } from "../crypto/base64";
import { pointProblem, verify as verifyStrict } from "../crypto/ed25519";
import { keptPrivateKey } from "../crypto/keep";
import { pkcs8 } from "../crypto/pkcs8";
import { buf, concat, equalBytes, randomBytes } from "../crypto/bytes";
import { MacError, MalformedError, NonContributoryKeyError } from "./errors";

const subtle = globalThis.crypto.subtle;

// Byte helpers are the app's shared ones (web/src/crypto/bytes.ts); re-exported for the e2e modules.
export { buf, concat as concatBytes, equalBytes, randomBytes };

export async function sha256(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await subtle.digest("SHA-256", buf(data)));
}

export async function hmacSha256(key: Uint8Array, data: Uint8Array): Promise<Uint8Array> {
  const cryptoKey = await subtle.importKey("raw", buf(key), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await subtle.sign("HMAC", cryptoKey, buf(data)));
}

/**
 * HMAC-SHA-256 in the calling thread (@noble/hashes: audited, no dependencies). Olm's symmetric ratchet
 * is a chain of up to 2000 HMACs per message (MAX_MESSAGE_GAP); through WebCrypto each costs two
 * promise round trips, which made a forged message at the largest gap cost ~100× what vodozemac spends.
 */
export function hmacSha256Sync(key: Uint8Array, data: Uint8Array): Uint8Array {
  return nobleHmac(nobleSha256, key, data);
}

/** HKDF-SHA-256 (RFC 5869) extract-and-expand to `length` bytes. */
export async function hkdfSha256(
  salt: Uint8Array,
  ikm: Uint8Array,
  info: Uint8Array,
  length: number,
): Promise<Uint8Array> {
  const key = await subtle.importKey("raw", buf(ikm), "HKDF", false, ["deriveBits"]);
  const bits = await subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: buf(salt), info: buf(info) },
    key,
    length * 8,
  );
  return new Uint8Array(bits);
}

export async function aesCbcEncrypt(key: Uint8Array, iv: Uint8Array, plaintext: Uint8Array): Promise<Uint8Array> {
  const cryptoKey = await subtle.importKey("raw", buf(key), "AES-CBC", false, ["encrypt"]);
  return new Uint8Array(await subtle.encrypt({ name: "AES-CBC", iv: buf(iv) }, cryptoKey, buf(plaintext)));
}

/** AES-256-CBC decryption; bad PKCS#7 padding (only reachable after a good MAC) is a MacError. */
export async function aesCbcDecrypt(key: Uint8Array, iv: Uint8Array, ciphertext: Uint8Array): Promise<Uint8Array> {
  const cryptoKey = await subtle.importKey("raw", buf(key), "AES-CBC", false, ["decrypt"]);
  try {
    return new Uint8Array(await subtle.decrypt({ name: "AES-CBC", iv: buf(iv) }, cryptoKey, buf(ciphertext)));
  } catch {
    throw new MacError("ciphertext has invalid length or padding");
  }
}

const X25519_BASE_POINT = Uint8Array.of(9, ...new Array<number>(31).fill(0));

/** A Curve25519 key pair: the private key never leaves WebCrypto. */
export interface X25519KeyPair {
  readonly privateKey: CryptoKey;
  readonly publicKey: Uint8Array;
}

export interface Ed25519KeyPair {
  readonly privateKey: CryptoKey;
  readonly publicKey: Uint8Array;
}

export async function generateX25519(): Promise<X25519KeyPair> {
  let publicKey = new Uint8Array(0);
  const privateKey = await keptPrivateKey(async (extractable) => {
    const pair = (await subtle.generateKey({ name: "X25519" }, extractable, ["deriveBits"])) as CryptoKeyPair;
    publicKey = new Uint8Array(await subtle.exportKey("raw", pair.publicKey));
    return pair.privateKey;
  });
  return { privateKey, publicKey };
}

/** Imports a raw X25519 secret (non-extractable) and derives its public key as X25519(secret, 9). */
export async function importX25519(secret: Uint8Array): Promise<X25519KeyPair> {
  if (secret.length !== 32) throw new MalformedError("an X25519 secret key is 32 bytes");
  const privateKey = await keptPrivateKey((extractable) =>
    subtle.importKey("pkcs8", pkcs8("X25519", secret), { name: "X25519" }, extractable, ["deriveBits"]),
  );
  const basePoint = await subtle.importKey("raw", buf(X25519_BASE_POINT), { name: "X25519" }, true, []);
  const publicKey = new Uint8Array(await subtle.deriveBits({ name: "X25519", public: basePoint }, privateKey, 256));
  return { privateKey, publicKey };
}

/** X25519(private, public); an all-zero result (a low-order public key) is refused. */
export async function x25519(privateKey: CryptoKey, publicKey: Uint8Array): Promise<Uint8Array> {
  if (publicKey.length !== 32) throw new MalformedError("a Curve25519 public key is 32 bytes");
  let shared: Uint8Array;
  try {
    const peer = await subtle.importKey("raw", buf(publicKey), { name: "X25519" }, true, []);
    shared = new Uint8Array(await subtle.deriveBits({ name: "X25519", public: peer }, privateKey, 256));
  } catch {
    throw new NonContributoryKeyError("X25519 refused the public key");
  }
  if (shared.every((byte) => byte === 0)) throw new NonContributoryKeyError("X25519 gave the all-zero secret");
  return shared;
}

export async function generateEd25519(): Promise<Ed25519KeyPair> {
  let publicKey = new Uint8Array(0);
  const privateKey = await keptPrivateKey(async (extractable) => {
    const pair = await subtle.generateKey({ name: "Ed25519" }, extractable, ["sign", "verify"]);
    publicKey = new Uint8Array(await subtle.exportKey("raw", pair.publicKey));
    return pair.privateKey;
  });
  return { privateKey, publicKey };
}

/**
 * Imports a 32-byte Ed25519 seed (RFC 8032 §5.1.5). The public key is read through a short-lived
 * extractable copy; the key kept is non-extractable.
 */
export async function importEd25519(seed: Uint8Array): Promise<Ed25519KeyPair> {
  if (seed.length !== 32) throw new MalformedError("an Ed25519 seed is 32 bytes");
  const wrapped = pkcs8("Ed25519", seed);
  const temporary = await subtle.importKey("pkcs8", wrapped, { name: "Ed25519" }, true, ["sign"]);
  const jwk = await subtle.exportKey("jwk", temporary);
  const privateKey = await keptPrivateKey((extractable) =>
    subtle.importKey("pkcs8", wrapped, { name: "Ed25519" }, extractable, ["sign"]),
  );
  return { privateKey, publicKey: b64uDecode(jwk.x ?? "") };
}

export async function ed25519Sign(privateKey: CryptoKey, message: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await subtle.sign({ name: "Ed25519" }, privateKey, buf(message)));
}

/**
 * True when `signature` is a strictly valid Ed25519 signature of `message` by `publicKey` (small-order and
 * non-canonical keys and R, and S ≥ L, refused as vodozemac's verify_strict does); never throws.
 */
export const ed25519Verify = verifyStrict;

/** Checks that 32 bytes are a usable Ed25519 public key: canonical, not small-order, and a curve point. */
export async function checkEd25519PublicKey(publicKey: Uint8Array): Promise<void> {
  if (publicKey.length !== 32) throw new MalformedError("an Ed25519 public key is 32 bytes");
  const problem = pointProblem(publicKey);
  if (problem) throw new MalformedError(`the Ed25519 public key ${problem}`);
  try {
    await subtle.importKey("raw", buf(publicKey), { name: "Ed25519" }, true, ["verify"]);
  } catch {
    throw new MalformedError("not an Ed25519 public key");
  }
}

/** A source of fresh X25519 key pairs: random by default; tests inject known keys to reproduce vectors. */
export type X25519KeySource = () => Promise<X25519KeyPair>;
export const randomX25519: X25519KeySource = generateX25519;
