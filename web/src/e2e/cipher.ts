/**
 * Olm version 1 authenticated encryption (olm.md "Olm Authenticated Encryption", megolm.md "Message
 * encryption"): HKDF-SHA-256(salt = 0, IKM = key, info, 80) → AES_KEY (32) ∥ HMAC_KEY (32) ∥ AES_IV (16);
 * AES-256-CBC with PKCS#7 padding; HMAC-SHA-256 over the whole encoded message, truncated to 8 bytes.
 * info is "OLM_KEYS" for an Olm message key M(i,j) and "MEGOLM_KEYS" for the 128-byte Megolm ratchet R(i).
 */

import { MacError } from "./errors";
import { aesCbcDecrypt, aesCbcEncrypt, equalBytes, hkdfSha256, hmacSha256 } from "./primitives";

export const MAC_LENGTH = 8;
const encoder = new TextEncoder();
const OLM_KEYS = encoder.encode("OLM_KEYS");
const MEGOLM_KEYS = encoder.encode("MEGOLM_KEYS");
const DEFAULT_SALT = Uint8Array.of(0);

export class Cipher {
  private constructor(
    private readonly aesKey: Uint8Array,
    private readonly macKey: Uint8Array,
    private readonly iv: Uint8Array,
  ) {}

  private static async derive(key: Uint8Array, info: Uint8Array): Promise<Cipher> {
    const expanded = await hkdfSha256(DEFAULT_SALT, key, info, 80);
    return new Cipher(expanded.slice(0, 32), expanded.slice(32, 64), expanded.slice(64, 80));
  }

  /** olm.md "Version 1": keys from an Olm message key M(i,j). */
  static olm(messageKey: Uint8Array): Promise<Cipher> {
    return Cipher.derive(messageKey, OLM_KEYS);
  }

  /** megolm.md "Message encryption": keys from the whole ratchet R(i) = R(i,0) ∥ … ∥ R(i,3). */
  static megolm(ratchet: Uint8Array): Promise<Cipher> {
    return Cipher.derive(ratchet, MEGOLM_KEYS);
  }

  encrypt(plaintext: Uint8Array): Promise<Uint8Array> {
    return aesCbcEncrypt(this.aesKey, this.iv, plaintext);
  }

  decrypt(ciphertext: Uint8Array): Promise<Uint8Array> {
    return aesCbcDecrypt(this.aesKey, this.iv, ciphertext);
  }

  /** The first 8 bytes of HMAC-SHA-256(HMAC_KEY, message). */
  async truncatedMac(message: Uint8Array): Promise<Uint8Array> {
    return (await hmacSha256(this.macKey, message)).slice(0, MAC_LENGTH);
  }

  async verifyTruncatedMac(message: Uint8Array, mac: Uint8Array): Promise<void> {
    if (!equalBytes(await this.truncatedMac(message), mac)) throw new MacError("bad MAC");
  }
}
