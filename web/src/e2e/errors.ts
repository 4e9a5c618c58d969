/**
 * Errors of the Olm/Megolm implementation. One root, split by who is to blame (like h11):
 *
 *   E2EError                         root: every error thrown by web/src/e2e is one of these
 *   ├── LocalE2EError                our caller misused the API (bad argument, exhausted index, bad pickle)
 *   │   └── PickleError              a pickle that is not ours or is damaged
 *   └── RemoteE2EError               the peer (or the network) sent something we refuse
 *       ├── DecodeError              the bytes do not parse
 *       │   ├── Base64Error          not (unpadded) standard base64
 *       │   ├── VersionError         unknown version byte
 *       │   ├── TruncatedError       shorter than the format allows
 *       │   └── MalformedError       a field is missing, repeated wrongly, of the wrong size or out of range
 *       ├── MacError                 the HMAC-SHA-256 tag does not verify (or padding is bad after a good MAC)
 *       ├── SignatureError           an Ed25519 signature does not verify
 *       ├── UnknownIndexError        Megolm: the message is older than the first known ratchet index
 *       ├── MissingMessageKeyError   Olm: an old chain index whose message key was used or dropped
 *       ├── MessageGapError          Olm: the chain index is too far ahead (more than MAX_MESSAGE_GAP)
 *       ├── NonContributoryKeyError  X25519 gave the all-zero secret (a low-order public key)
 *       └── SessionMismatchError     a pre-key message for another identity key or an unknown one-time key
 *
 * Messages never carry key material or plaintext.
 */

export class E2EError extends Error {
  override name = "E2EError";
}

export class LocalE2EError extends E2EError {
  override name = "LocalE2EError";
}

export class PickleError extends LocalE2EError {
  override name = "PickleError";
}

export class RemoteE2EError extends E2EError {
  override name = "RemoteE2EError";
}

export class DecodeError extends RemoteE2EError {
  override name = "DecodeError";
}

export class Base64Error extends DecodeError {
  override name = "Base64Error";
}

export class VersionError extends DecodeError {
  override name = "VersionError";
}

export class TruncatedError extends DecodeError {
  override name = "TruncatedError";
}

export class MalformedError extends DecodeError {
  override name = "MalformedError";
}

export class MacError extends RemoteE2EError {
  override name = "MacError";
}

export class SignatureError extends RemoteE2EError {
  override name = "SignatureError";
}

export class UnknownIndexError extends RemoteE2EError {
  override name = "UnknownIndexError";
}

export class MissingMessageKeyError extends RemoteE2EError {
  override name = "MissingMessageKeyError";
}

export class MessageGapError extends RemoteE2EError {
  override name = "MessageGapError";
}

export class NonContributoryKeyError extends RemoteE2EError {
  override name = "NonContributoryKeyError";
}

export class SessionMismatchError extends RemoteE2EError {
  override name = "SessionMismatchError";
}
