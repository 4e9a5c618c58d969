/**
 * The QR code (linking.md §3): a 129-byte payload carried as `{origin}/link#{b64u(payload)}`.
 *
 * Errors (every failure of decodeLinkText is one of these; nothing else escapes):
 *
 *   LinkCodeError
 *   ├── MalformedCode        too long, bad b64u fragment, wrong length
 *   ├── NotALinkCode         not an http(s) URL whose path is exactly /link with a fragment and no query
 *   ├── UnsupportedVersion   first payload byte is not 1
 *   └── ForeignOrigin        names another server than ours (carries the origin it names)
 */
import { pointProblem } from "../crypto/ed25519";
import { B64uError, b64uDecode, b64uEncode } from "../crypto/base64";
import { concat } from "../crypto/bytes";
import { codeRefusal } from "./wording";

export const PAYLOAD_VERSION = 1;
export const PAYLOAD_LENGTH = 129;
export const MAX_TEXT_LENGTH = 512;

export interface LinkPayload {
  version: number;
  ref: Uint8Array;
  /** Companion's ephemeral X25519 public key (HPKE pkR). */
  ephemeralKey: Uint8Array;
  /** Companion's device Ed25519 public key. */
  deviceKey: Uint8Array;
  /** HPKE psk; never reaches the server. */
  linkSecret: Uint8Array;
}

export interface DecodedLinkCode extends LinkPayload {
  origin: string;
}

export class LinkCodeError extends Error {
  override name = "LinkCodeError";
}
export class MalformedCode extends LinkCodeError {
  override name = "MalformedCode";
  constructor(detail = "it is damaged or incomplete") {
    super(codeRefusal("malformed_code", { detail }));
  }
}
export class NotALinkCode extends LinkCodeError {
  override name = "NotALinkCode";
  constructor() {
    super(codeRefusal("not_a_link_code"));
  }
}
export class UnsupportedVersion extends LinkCodeError {
  override name = "UnsupportedVersion";
  constructor(readonly version: number) {
    super(codeRefusal("unsupported_version", { version }));
  }
}
export class ForeignOrigin extends LinkCodeError {
  override name = "ForeignOrigin";
  constructor(readonly origin: string) {
    super(codeRefusal("foreign_origin", { origin }));
  }
}

/** Canonical origin (linking.md §2): scheme://host[:port], lowercase, default port omitted; null if not http(s). */
export function normaliseOrigin(text: string): string | null {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return null;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return null;
  return url.origin.toLowerCase();
}

export function encodePayload(payload: LinkPayload): Uint8Array {
  const parts = [payload.ref, payload.ephemeralKey, payload.deviceKey, payload.linkSecret];
  if (parts.some((p) => p.length !== 32)) throw new TypeError("every payload field is 32 bytes");
  return concat(new Uint8Array([PAYLOAD_VERSION]), ...parts);
}

export function decodePayload(bytes: Uint8Array): LinkPayload {
  if (bytes.length < 1) throw new MalformedCode("it is empty");
  if (bytes[0] !== PAYLOAD_VERSION) throw new UnsupportedVersion(bytes[0] ?? 0);
  if (bytes.length !== PAYLOAD_LENGTH) throw new MalformedCode(`it holds ${bytes.length} bytes, not ${PAYLOAD_LENGTH}`);
  return {
    version: PAYLOAD_VERSION,
    ref: bytes.slice(1, 33),
    ephemeralKey: bytes.slice(33, 65),
    deviceKey: bytes.slice(65, 97),
    linkSecret: bytes.slice(97, 129),
  };
}

/** §3.2: the text a companion puts in its QR code. */
export function encodeLinkText(origin: string, payload: LinkPayload): string {
  return `${origin}/link#${b64uEncode(encodePayload(payload))}`;
}

// scheme "://" authority [path] ["?" query] ["#" fragment]; the fragment is taken raw (no percent-decoding).
const URL_SHAPE = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^?#]*)(\?[^#]*)?(#.*)?$/s;

/** §3.3: what the primary does with scanned text, in order. `serverOrigin` is the origin from `hello`. */
export function decodeLinkText(text: string, serverOrigin: string): DecodedLinkCode {
  try {
    return decodeLinkTextUnguarded(text, serverOrigin);
  } catch (error) {
    if (error instanceof LinkCodeError) throw error;
    throw new MalformedCode(); // "no other exception may escape the decoder"
  }
}

function decodeLinkTextUnguarded(text: string, serverOrigin: string): DecodedLinkCode {
  if (typeof text !== "string") throw new NotALinkCode();
  if (text.length > MAX_TEXT_LENGTH)
    throw new MalformedCode(`it is ${text.length} characters long, at most ${MAX_TEXT_LENGTH} are allowed`);
  const match = URL_SHAPE.exec(text.trim());
  if (!match) throw new NotALinkCode();
  const [, scheme = "", authority = "", path = "", query = "", fragment = ""] = match;
  // An empty "?" counts as no query and an empty "#" as no fragment (as urllib.parse.urlsplit sees them).
  if (!/^https?$/i.test(scheme) || authority === "" || path !== "/link" || query.length > 1 || fragment.length <= 1) {
    throw new NotALinkCode();
  }
  const origin = normaliseOrigin(`${scheme}://${authority}/`);
  if (origin === null) throw new NotALinkCode();
  // Before the payload: a damaged or newer code from another server still gets the phishing warning.
  if (origin !== normaliseOrigin(serverOrigin)) throw new ForeignOrigin(origin);
  let bytes: Uint8Array;
  try {
    bytes = b64uDecode(fragment.slice(1));
  } catch (error) {
    if (error instanceof B64uError) throw new MalformedCode("it is not valid base64url");
    throw new MalformedCode();
  }
  const payload = decodePayload(bytes);
  // Never certify a key anyone can sign for (small-order or non-canonical, ../crypto/ed25519.ts).
  if (pointProblem(payload.deviceKey) !== null) throw new MalformedCode("its device key is not a usable Ed25519 key");
  return { ...payload, origin };
}
