/**
 * Olm and Megolm on WebCrypto, wire-compatible with vodozemac (Matrix's audited Rust implementation).
 * See docs/protocol/olm-megolm.md. libolm is not used: it is deprecated (CVE-2024-45191/45192/45193).
 */

export * from "./errors";
export { decodeBase64, encodeBase64 } from "../crypto/base64";
export { Cipher, MAC_LENGTH } from "./cipher";
export { importX25519, generateX25519, randomX25519, type X25519KeyPair, type X25519KeySource } from "./primitives";
export {
  MESSAGE_TYPE_NORMAL,
  MESSAGE_TYPE_PRE_KEY,
  OLM_VERSION,
  OlmNormalMessage,
  PreKeyMessage,
  decodeOlmMessage,
  olmMessageFromJson,
  olmMessageToJson,
  sessionIdOf,
  type OlmMessage,
  type SessionKeys,
} from "./olmMessage";
export {
  MAX_MESSAGE_GAP,
  MAX_MESSAGE_KEYS,
  MAX_RECEIVING_CHAINS,
  OlmSession,
  chainWork,
  type OlmSessionPickle,
} from "./olmSession";
export {
  MAX_NUMBER_OF_ONE_TIME_KEYS,
  OlmAccount,
  keyIdToString,
  verifyEd25519Signature,
  type OlmAccountPickle,
  type OlmAccountSecrets,
} from "./olmAccount";
export { MegolmRatchet, RATCHET_LENGTH } from "./megolmRatchet";
export { MEGOLM_VERSION, MegolmMessage } from "./megolmMessage";
export {
  decodeExportedSessionKey,
  decodeSessionKey,
  encodeExportedSessionKey,
  type SessionKeyData,
} from "./megolmSessionKey";
export {
  InboundGroupSession,
  OutboundGroupSession,
  type InboundGroupSessionPickle,
  type OutboundGroupSessionPickle,
} from "./megolmSession";
