/**
 * WebCrypto imports private X25519/Ed25519 keys only as PKCS#8 (or JWK), so a raw 32-byte key is wrapped
 * in the fixed DER prefix RFC 8410 §7 gives: SEQUENCE { version 0, AlgorithmIdentifier { OID
 * 1.3.101.110 (X25519) or 1.3.101.112 (Ed25519) }, OCTET STRING { OCTET STRING (32 bytes) } }.
 */

import { buf, concat } from "./bytes";

export type Curve = "X25519" | "Ed25519";

// The prefixes differ only in the OID's last arc: 110 (0x6e) for X25519, 112 (0x70) for Ed25519.
const OID_LAST_ARC: Record<Curve, number> = { X25519: 0x6e, Ed25519: 0x70 };

/** The PKCS#8 encoding of a raw 32-byte private key (an X25519 scalar or an Ed25519 seed). */
export function pkcs8(curve: Curve, raw: Uint8Array): ArrayBuffer {
  if (raw.length !== 32) throw new TypeError(`${curve} private key must be 32 bytes`);
  // prettier-ignore
  const prefix = Uint8Array.of(
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, OID_LAST_ARC[curve], 0x04, 0x22, 0x04, 0x20,
  );
  return buf(concat(prefix, raw));
}
