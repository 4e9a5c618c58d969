/**
 * The Megolm message format (megolm.md "Message format"), version 0x03 (MAC truncated to 8 bytes):
 *
 *   0x03 ∥ 0x08 varint i ∥ 0x12 len X(i)
 *        ∥ MAC (8 bytes, over all before it) ∥ Ed25519 signature (64, over all before it)
 */

import { MAC_LENGTH } from "./cipher";
import { MalformedError, TruncatedError, VersionError } from "./errors";
import { concatBytes } from "./primitives";
import { WIRE_BYTES, WIRE_VARINT, decodeFields, intField, tagged } from "./wire";

export const MEGOLM_VERSION = 3;
export const SIGNATURE_LENGTH = 64;

const FIELDS = new Map([
  [1, WIRE_VARINT], // Message-Index, tag 0x08
  [2, WIRE_BYTES], // Cipher-Text, tag 0x12
]);

export class MegolmMessage {
  constructor(
    readonly messageIndex: number,
    readonly ciphertext: Uint8Array,
    readonly mac: Uint8Array = new Uint8Array(MAC_LENGTH),
    readonly signature: Uint8Array = new Uint8Array(SIGNATURE_LENGTH),
  ) {}

  /** Version and payload: what the MAC covers. */
  macInput(): Uint8Array {
    return concatBytes(
      Uint8Array.of(MEGOLM_VERSION),
      ...tagged(0x08, this.messageIndex),
      ...tagged(0x12, this.ciphertext),
    );
  }

  /** Version, payload and MAC: what the signature covers. */
  signatureInput(): Uint8Array {
    return concatBytes(this.macInput(), this.mac);
  }

  encode(): Uint8Array {
    return concatBytes(this.signatureInput(), this.signature);
  }

  static decode(bytes: Uint8Array): MegolmMessage {
    if (bytes.length < 1) throw new TruncatedError("empty Megolm message");
    if (bytes[0] !== MEGOLM_VERSION) throw new VersionError("unsupported Megolm message version");
    const suffix = MAC_LENGTH + SIGNATURE_LENGTH;
    if (bytes.length < suffix + 2) throw new TruncatedError("Megolm message too short");
    const fields = decodeFields(bytes.subarray(1, bytes.length - suffix), FIELDS);
    const messageIndex = intField(fields, 1);
    if (messageIndex > 0xffffffff) throw new MalformedError("message index out of range");
    const ciphertext = (fields.get(2) as Uint8Array | undefined) ?? new Uint8Array(0);
    const macStart = bytes.length - suffix;
    return new MegolmMessage(
      messageIndex,
      ciphertext,
      bytes.slice(macStart, macStart + MAC_LENGTH),
      bytes.slice(bytes.length - SIGNATURE_LENGTH),
    );
  }
}
