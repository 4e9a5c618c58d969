/** Ed25519 (RFC 8032) on WebCrypto: key generation (non-extractable private keys), raw public keys, ids. */
import { b64uEncode } from "./b64u";
import { buf, concat } from "./bytes";

const ED25519 = { name: "Ed25519" } as const;

/** A fresh key pair; the private key is non-extractable unless a test asks otherwise. */
export async function generateEd25519(extractable = false): Promise<CryptoKeyPair> {
  return (await crypto.subtle.generateKey(ED25519, extractable, ["sign", "verify"])) as CryptoKeyPair;
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
  if (seed.length !== 32) throw new TypeError("Ed25519 private key must be 32 bytes");
  const pkcs8 = concat(new Uint8Array([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]), seed);
  return crypto.subtle.importKey("pkcs8", buf(pkcs8), ED25519, extractable, ["sign"]);
}

export async function sign(privateKey: CryptoKey, message: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.sign(ED25519, privateKey, buf(message)));
}

/** Verifies; malformed keys or signatures verify as false rather than throwing. */
export async function verify(publicKeyRaw: Uint8Array, message: Uint8Array, signature: Uint8Array): Promise<boolean> {
  if (publicKeyRaw.length !== 32 || signature.length !== 64) return false;
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
