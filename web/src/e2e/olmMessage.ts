/**
 * Olm wire formats (olm.md "The Olm Message Format"): the normal message and the pre-key message, both
 * version byte 0x03 (Olm version 1, HMAC truncated to 8 bytes).
 *
 *   normal:  0x03 ∥ 0x0A len T_i ∥ 0x10 varint j ∥ 0x22 len X(i,j) ∥ MAC (8 bytes, over all before it)
 *   pre-key: 0x03 ∥ 0x0A len E_B ∥ 0x12 len E_A ∥ 0x1A len I_A ∥ 0x22 len <normal message>
 *
 * The transport tells the two apart: type 0 is a pre-key message, type 1 a normal one (as in Matrix's
 * m.olm.v1.curve25519-aes-sha2 events and vodozemac's OlmMessage::to_parts).
 */

import { decodeBase64, encodeBase64 } from "../crypto/base64";
import { MAC_LENGTH } from "./cipher";
import { MalformedError, TruncatedError, VersionError } from "./errors";
import { concatBytes, sha256 } from "./primitives";
import { WIRE_BYTES, WIRE_VARINT, bytesField, decodeFields, intField, tagged } from "./wire";

export const OLM_VERSION = 3;
export const KEY_LENGTH = 32;

export const MESSAGE_TYPE_PRE_KEY = 0;
export const MESSAGE_TYPE_NORMAL = 1;

const NORMAL_FIELDS = new Map([
  [1, WIRE_BYTES], // Ratchet-Key, tag 0x0A
  [2, WIRE_VARINT], // Chain-Index, tag 0x10
  [4, WIRE_BYTES], // Cipher-Text, tag 0x22
]);

const PRE_KEY_FIELDS = new Map([
  [1, WIRE_BYTES], // One-Time-Key, tag 0x0A
  [2, WIRE_BYTES], // Base-Key, tag 0x12
  [3, WIRE_BYTES], // Identity-Key, tag 0x1A
  [4, WIRE_BYTES], // Message, tag 0x22
]);

/** olm.md "Normal Messages". */
export class OlmNormalMessage {
  constructor(
    readonly ratchetKey: Uint8Array,
    readonly chainIndex: number,
    readonly ciphertext: Uint8Array,
    readonly mac: Uint8Array = new Uint8Array(MAC_LENGTH),
  ) {}

  /** Version byte and payload: the bytes the MAC covers. */
  macInput(): Uint8Array {
    return concatBytes(
      Uint8Array.of(OLM_VERSION),
      ...tagged(0x0a, this.ratchetKey),
      ...tagged(0x10, this.chainIndex),
      ...tagged(0x22, this.ciphertext),
    );
  }

  withMac(mac: Uint8Array): OlmNormalMessage {
    return new OlmNormalMessage(this.ratchetKey, this.chainIndex, this.ciphertext, mac);
  }

  encode(): Uint8Array {
    return concatBytes(this.macInput(), this.mac);
  }

  static decode(bytes: Uint8Array): OlmNormalMessage {
    if (bytes.length < 1) throw new TruncatedError("empty Olm message");
    if (bytes[0] !== OLM_VERSION) throw new VersionError("unsupported Olm message version");
    if (bytes.length < MAC_LENGTH + 2) throw new TruncatedError("Olm message too short");
    const fields = decodeFields(bytes.subarray(1, bytes.length - MAC_LENGTH), NORMAL_FIELDS);
    const ratchetKey = bytesField(fields, 1, KEY_LENGTH);
    const chainIndex = intField(fields, 2);
    const ciphertext = (fields.get(4) as Uint8Array | undefined) ?? new Uint8Array(0);
    return new OlmNormalMessage(ratchetKey, chainIndex, ciphertext, bytes.slice(bytes.length - MAC_LENGTH));
  }
}

/** The three public keys that name an Olm session (olm.md "Sending the first pre-key messages"). */
export interface SessionKeys {
  readonly identityKey: Uint8Array; // I_A
  readonly baseKey: Uint8Array; // E_A
  readonly oneTimeKey: Uint8Array; // E_B
}

/** The session id vodozemac and libolm report: base64(SHA-256(I_A ∥ E_A ∥ E_B)). */
export async function sessionIdOf(keys: SessionKeys): Promise<string> {
  return encodeBase64(await sha256(concatBytes(keys.identityKey, keys.baseKey, keys.oneTimeKey)));
}

/** olm.md "Pre-Key Messages". */
export class PreKeyMessage {
  constructor(
    readonly sessionKeys: SessionKeys,
    readonly message: OlmNormalMessage,
  ) {}

  encode(): Uint8Array {
    return concatBytes(
      Uint8Array.of(OLM_VERSION),
      ...tagged(0x0a, this.sessionKeys.oneTimeKey),
      ...tagged(0x12, this.sessionKeys.baseKey),
      ...tagged(0x1a, this.sessionKeys.identityKey),
      ...tagged(0x22, this.message.encode()),
    );
  }

  sessionId(): Promise<string> {
    return sessionIdOf(this.sessionKeys);
  }

  static decode(bytes: Uint8Array): PreKeyMessage {
    if (bytes.length < 1) throw new TruncatedError("empty Olm pre-key message");
    if (bytes[0] !== OLM_VERSION) throw new VersionError("unsupported Olm pre-key message version");
    const fields = decodeFields(bytes.subarray(1), PRE_KEY_FIELDS);
    const oneTimeKey = bytesField(fields, 1, KEY_LENGTH);
    const baseKey = bytesField(fields, 2, KEY_LENGTH);
    const identityKey = bytesField(fields, 3, KEY_LENGTH);
    const inner = fields.get(4);
    if (!(inner instanceof Uint8Array)) throw new MalformedError("pre-key message without a message");
    return new PreKeyMessage({ identityKey, baseKey, oneTimeKey }, OlmNormalMessage.decode(inner));
  }
}

/** An Olm message as the transport carries it: its type and its bytes. */
export interface OlmMessage {
  readonly type: typeof MESSAGE_TYPE_PRE_KEY | typeof MESSAGE_TYPE_NORMAL;
  readonly body: Uint8Array;
}

export type DecodedOlmMessage = { type: 0; message: PreKeyMessage } | { type: 1; message: OlmNormalMessage };

export function decodeOlmMessage(message: OlmMessage): DecodedOlmMessage {
  if (message.type === MESSAGE_TYPE_PRE_KEY) return { type: 0, message: PreKeyMessage.decode(message.body) };
  // Callers may hand over an object that never went through olmMessageFromJson.
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition
  if (message.type === MESSAGE_TYPE_NORMAL) return { type: 1, message: OlmNormalMessage.decode(message.body) };
  throw new MalformedError("unknown Olm message type");
}

/** The JSON form Matrix uses ({"type": 0|1, "body": unpadded base64}). */
export function olmMessageFromJson(json: { type: number; body: string }): OlmMessage {
  if (json.type !== 0 && json.type !== 1) throw new MalformedError("unknown Olm message type");
  return { type: json.type, body: decodeBase64(json.body) };
}

export function olmMessageToJson(message: OlmMessage): { type: number; body: string } {
  return { type: message.type, body: encodeBase64(message.body) };
}
