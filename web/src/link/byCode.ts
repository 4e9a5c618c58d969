/**
 * Link with a typed code (linking.md §10, protocol version 2): the browser twin of
 * src/lockstep/link/bycode.py. The whole 8-character code is CPace's password; the server knows only its
 * first 3 characters (they route the offer) and burns a code after one offer. Under the CPace key the
 * companion seals the same 129-byte payload a QR code carries (§3.1); from there it is the QR flow.
 *
 * Errors: TypedCodeInvalid (a LinkCodeError: what was typed cannot be a code) and WrongCode (the CPace
 * keys differ: mistyped, another screen's code, or another server's).
 */
import { pointProblem } from "../crypto/ed25519";
import { buf, utf8 } from "../crypto/bytes";
import * as cpace from "../crypto/cpace";
import {
  type DecodedLinkCode,
  LinkCodeError,
  type LinkPayload,
  MalformedCode,
  decodePayload,
  encodePayload,
  normaliseOrigin,
} from "./qr";
import { codeRefusal } from "./wording";

export const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"; // Crockford's base32 digits: no I, L, O, U
export const CODE_LENGTH = 8;
export const CODE_ID_LENGTH = 3;
export const SID_SIZE = 16;
export const SEALED_SIZE = 129 + 16; // the §3.1 payload and the AES-GCM tag
const CI_LABEL = utf8("lockstep/link-code/v2");
const SEAL_INFO = utf8("lockstep/link-code/v2 seal");

export class TypedCodeInvalid extends LinkCodeError {
  override name = "TypedCodeInvalid";
  constructor(detail: string) {
    super(codeRefusal("typed_code_invalid", { detail }));
  }
}

export class WrongCode extends Error {
  override name = "WrongCode";
  constructor() {
    super(codeRefusal("wrong_code"));
  }
}

/** The canonical 8 characters of a typed code: case, spaces and dashes ignored; O, I, L read as 0, 1, 1. */
export function parseCode(text: string): string {
  if (text.length > 64) throw new TypedCodeInvalid("that is far too long");
  const code = text
    .replace(/[\s-]+/g, "")
    .toUpperCase()
    .replace(/O/g, "0")
    .replace(/[IL]/g, "1");
  const wrong = [...new Set(Array.from(code).filter((character) => !ALPHABET.includes(character)))].sort();
  if (wrong.length > 0) throw new TypedCodeInvalid(`it contains ${wrong.map((c) => `'${c}'`).join(" ")}`);
  if (code.length !== CODE_LENGTH) throw new TypedCodeInvalid(`it has ${code.length} characters, not ${CODE_LENGTH}`);
  return code;
}

/** `K7PM-2QXD`: how a code is shown. */
export function formatCode(code: string): string {
  return `${code.slice(0, 4)}-${code.slice(4)}`;
}

export function isCodeId(text: unknown): text is string {
  return (
    typeof text === "string" && text.length === CODE_ID_LENGTH && Array.from(text).every((c) => ALPHABET.includes(c))
  );
}

/** The companion's code: the server's `codeId` and 5 characters only the companion knows. */
export function newCode(codeId: string): string {
  if (!isCodeId(codeId)) throw new TypeError("not a code id");
  let secret = "";
  // 256 is a multiple of 32, so a byte modulo 32 is uniform.
  for (const byte of crypto.getRandomValues(new Uint8Array(CODE_LENGTH - CODE_ID_LENGTH)))
    secret += ALPHABET.charAt(byte % 32);
  return codeId + secret;
}

/** CPace's CI: the protocol label and the server's origin (roles are fixed: primary A, companion B). */
export function channelIdentifier(origin: string): Uint8Array {
  return cpace.lvCat(CI_LABEL, utf8(normaliseOrigin(origin) ?? origin));
}

/** AES-256-GCM key and nonce from ISK through HKDF-SHA256 (draft "Key derivation": never use ISK raw). */
async function sealKey(isk: Uint8Array, sid: Uint8Array): Promise<{ key: CryptoKey; nonce: Uint8Array }> {
  const ikm = await crypto.subtle.importKey("raw", buf(isk), "HKDF", false, ["deriveBits"]);
  const okm = new Uint8Array(
    await crypto.subtle.deriveBits(
      { name: "HKDF", hash: "SHA-256", salt: buf(sid), info: buf(SEAL_INFO) },
      ikm,
      44 * 8,
    ),
  );
  const key = await crypto.subtle.importKey("raw", buf(okm.slice(0, 32)), "AES-GCM", false, ["encrypt", "decrypt"]);
  return { key, nonce: okm.slice(32) };
}

export interface Offer {
  codeId: string;
  sid: Uint8Array;
  share: Uint8Array;
}

/** The primary between sending its offer and reading the companion's answer. */
export interface PrimaryRun {
  origin: string;
  party: cpace.Party;
  offer: Offer;
}

/** The primary's CPace message (A) for a canonical typed code. */
export async function startPrimary(code: string, origin: string): Promise<PrimaryRun> {
  const sid = crypto.getRandomValues(new Uint8Array(SID_SIZE));
  const party = await cpace.start(utf8(code), channelIdentifier(origin), sid, new Uint8Array(), true);
  return { origin, party, offer: { codeId: code.slice(0, CODE_ID_LENGTH), sid, share: party.share.y } };
}

/** The companion's payload for the primary's own origin, or WrongCode; a weak device key is MalformedCode. */
export async function openAnswer(run: PrimaryRun, share: Uint8Array, sealed: Uint8Array): Promise<DecodedLinkCode> {
  let payload: LinkPayload;
  try {
    const isk = await cpace.finish(run.party, { y: share, ad: new Uint8Array() });
    const { key, nonce } = await sealKey(isk, run.party.sid);
    payload = decodePayload(
      new Uint8Array(await crypto.subtle.decrypt({ name: "AES-GCM", iv: buf(nonce) }, key, buf(sealed))),
    );
  } catch (error) {
    if (error instanceof LinkCodeError) throw error;
    throw new WrongCode(); // CPace aborted, or the tag did not verify
  }
  if (pointProblem(payload.deviceKey) !== null) throw new MalformedCode("its device key is not a usable Ed25519 key");
  return { ...payload, origin: run.origin };
}

/** The companion's side: CPace as B on the primary's offer, sealing the payload it would show as a QR.
 * A low-order share is WrongCode (the companion then leaves the offer unanswered). */
export async function answer(
  code: string,
  origin: string,
  sid: Uint8Array,
  offerShare: Uint8Array,
  payload: LinkPayload,
): Promise<{ share: Uint8Array; sealed: Uint8Array }> {
  if (sid.length !== SID_SIZE) throw new WrongCode();
  const party = await cpace.start(utf8(code), channelIdentifier(origin), sid, new Uint8Array(), false);
  let isk: Uint8Array;
  try {
    isk = await cpace.finish(party, { y: offerShare, ad: new Uint8Array() });
  } catch {
    throw new WrongCode();
  }
  const { key, nonce } = await sealKey(isk, sid);
  const sealed = new Uint8Array(
    await crypto.subtle.encrypt({ name: "AES-GCM", iv: buf(nonce) }, key, buf(encodePayload(payload))),
  );
  return { share: party.share.y, sealed };
}
