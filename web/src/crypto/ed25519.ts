/**
 * Ed25519 (RFC 8032) on WebCrypto: key generation (non-extractable private keys), raw public keys, ids,
 * and strict verification.
 *
 * WebCrypto's verify (BoringSSL) follows RFC 8032's cofactorless equation but accepts small-order public
 * keys: with A = 01 00…00 (the neutral point) and R = 01 00…00, S = 0, [S]B = R + [k]A holds for every
 * message. Like vodozemac's verify_strict (ed25519-dalek) and lockstep.link.ed25519, every key and
 * signature from outside is refused first when A or R is not canonically encoded (y ≥ p, RFC 8032 §5.1.3)
 * or is one of the eight small-order points (y ∈ {0, 1, p−1, ±y₈}, any sign bit), or S ≥ L (RFC 8032
 * §5.1.7 step 1). Both languages run vectors/ed25519-strict.json.
 */
import { b64uEncode } from "./base64";
import { buf } from "./bytes";
import { keptPrivateKey } from "./keep";
import { pkcs8 } from "./pkcs8";

const ED25519 = { name: "Ed25519" } as const;

const P = 2n ** 255n - 19n; // the field prime (RFC 8032 §5.1)
const L = 2n ** 252n + 27742317777372353535851937790883648493n; // the base point's order
const Y_ORDER_8 = 2707385501144840649318225287225658788936804267575313519463743609750303402022n;
const SMALL_ORDER_Y = new Set([0n, 1n, P - 1n, Y_ORDER_8, P - Y_ORDER_8]);

function littleEndian(bytes: Uint8Array): bigint {
  let value = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[i] ?? 0);
  return value;
}

/** Why a 32-byte point encoding is refused (non-canonical or small-order), or null. */
export function pointProblem(encoded: Uint8Array): string | null {
  if (encoded.length !== 32) return "is not 32 bytes";
  const y = littleEndian(encoded) & ((1n << 255n) - 1n);
  if (y >= P) return "is not canonically encoded (y ≥ p)";
  if (SMALL_ORDER_Y.has(y)) return "is a small-order point";
  return null;
}

/** Why a signature is refused before the equation is checked (R's encoding, S ≥ L), or null. */
export function signatureProblem(signature: Uint8Array): string | null {
  if (signature.length !== 64) return "is not 64 bytes";
  const r = pointProblem(signature.subarray(0, 32));
  if (r) return `point R ${r}`;
  if (littleEndian(signature.subarray(32)) >= L) return "scalar S is not below L (RFC 8032 §5.1.7)";
  return null;
}

/** A fresh key pair; the private key is non-extractable (and kept wrapped, ./keep.ts) unless a test asks otherwise. */
export async function generateEd25519(extractable = false): Promise<CryptoKeyPair> {
  if (extractable) return await crypto.subtle.generateKey(ED25519, true, ["sign", "verify"]);
  let publicKey: CryptoKey | undefined;
  const privateKey = await keptPrivateKey(async (exportable) => {
    const pair = await crypto.subtle.generateKey(ED25519, exportable, ["sign", "verify"]);
    publicKey = pair.publicKey;
    return pair.privateKey;
  });
  return { privateKey, publicKey: publicKey as CryptoKey };
}

export async function exportEd25519Public(publicKey: CryptoKey): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.exportKey("raw", publicKey));
}

export async function importEd25519Public(raw: Uint8Array): Promise<CryptoKey> {
  if (raw.length !== 32) throw new TypeError("Ed25519 public key must be 32 bytes");
  return crypto.subtle.importKey("raw", buf(raw), ED25519, true, ["verify"]);
}

/** Imports a raw 32-byte Ed25519 seed (PKCS#8 wrapping, RFC 8410). Used for test vectors. */
export async function importEd25519Private(seed: Uint8Array, extractable = false): Promise<CryptoKey> {
  return crypto.subtle.importKey("pkcs8", pkcs8("Ed25519", seed), ED25519, extractable, ["sign"]);
}

export async function sign(privateKey: CryptoKey, message: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.sign(ED25519, privateKey, buf(message)));
}

/** Verifies strictly; weak or malformed keys and signatures verify as false rather than throwing. */
export async function verify(publicKeyRaw: Uint8Array, message: Uint8Array, signature: Uint8Array): Promise<boolean> {
  if (pointProblem(publicKeyRaw) !== null || signatureProblem(signature) !== null) return false;
  try {
    return await crypto.subtle.verify(ED25519, await importEd25519Public(publicKeyRaw), buf(signature), buf(message));
  } catch {
    return false;
  }
}

/** device_id / account_id = b64u(SHA-256(ed25519_public_key)[0:16]) (linking.md §2). */
export async function keyId(publicKeyRaw: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", buf(publicKeyRaw)));
  return b64uEncode(digest.subarray(0, 16));
}
