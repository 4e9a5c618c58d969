/**
 * Checking a WebAuthn assertion on the device itself (the app lock, docs/protocol/linking.md §11): no
 * server takes part, so the phone does the relying party's half of WebAuthn Level 3 §7.2 "Verifying an
 * Authentication Assertion" against the public key it kept when the passkey was registered.
 *
 * Pure apart from WebCrypto: the caller passes what `navigator.credentials.get` returned and what it
 * expects (the challenge it drew, its origin); every failure is an AssertionRejected naming the step.
 */
import { b64uEncode } from "../crypto/base64";
import { buf, concat, equalBytes, fromUtf8, utf8 } from "../crypto/bytes";

/** COSE algorithm identifiers (RFC 9053 §2.1, RFC 8812 §2) the app lock accepts, in order of preference. */
export const ES256 = -7;
export const EDDSA = -8;
export const RS256 = -257;
export const ALGORITHMS = [ES256, EDDSA, RS256] as const;

/** What the phone keeps of its passkey: enough to check an assertion with no server. */
export interface PasskeyRecord {
  credentialId: Uint8Array;
  /** SubjectPublicKeyInfo DER, as `AuthenticatorAttestationResponse.getPublicKey()` gives it. */
  publicKey: Uint8Array;
  algorithm: number;
  rpId: string;
}

/** What `navigator.credentials.get` returned, as bytes. */
export interface Assertion {
  credentialId: Uint8Array;
  clientDataJSON: Uint8Array;
  authenticatorData: Uint8Array;
  signature: Uint8Array;
}

export class AssertionRejected extends Error {
  override name = "AssertionRejected";
}

/** The flags byte of authenticator data (WebAuthn §6.1): bit 0 user present, bit 2 user verified. */
export interface AuthenticatorFlags {
  userPresent: boolean;
  userVerified: boolean;
}

/** rpIdHash (32 bytes), flags (1), signCount (4): the fixed start of authenticator data (§6.1). */
const AUTH_DATA_MIN = 37;

export function authenticatorFlags(authenticatorData: Uint8Array): AuthenticatorFlags {
  if (authenticatorData.length < AUTH_DATA_MIN) throw new AssertionRejected("authenticator data is too short");
  const flags = authenticatorData[32] ?? 0;
  return { userPresent: (flags & 0x01) !== 0, userVerified: (flags & 0x04) !== 0 };
}

async function sha256(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", buf(data)));
}

/**
 * Throws AssertionRejected unless `assertion` is a fresh, user-verified answer of the passkey in `record`
 * to `challenge`, made for a page of `origin` (§7.2 steps 5-21; the steps about a user handle and the
 * signature counter are left out: the credential is named in allowCredentials, and platform passkeys that
 * sync across a person's devices always report a counter of 0).
 */
export async function verifyAssertion(
  record: PasskeyRecord,
  assertion: Assertion,
  expected: { challenge: Uint8Array; origin: string },
): Promise<void> {
  if (!equalBytes(assertion.credentialId, record.credentialId))
    throw new AssertionRejected("the answer came from another passkey");
  checkClientData(assertion.clientDataJSON, expected); // steps 10-14
  const data = assertion.authenticatorData;
  const flags = authenticatorFlags(data);
  if (!equalBytes(data.subarray(0, 32), await sha256(utf8(record.rpId))))
    // step 15
    throw new AssertionRejected("the passkey answered for another site");
  if (!flags.userPresent) throw new AssertionRejected("the passkey did not see anyone there"); // step 16
  if (!flags.userVerified) throw new AssertionRejected("the phone did not check that it is you"); // step 17
  const signed = concat(data, await sha256(assertion.clientDataJSON)); // steps 19-20
  if (!(await verifySignature(record, signed, assertion.signature)))
    throw new AssertionRejected("the passkey's signature does not verify");
}

function checkClientData(clientDataJSON: Uint8Array, expected: { challenge: Uint8Array; origin: string }): void {
  let clientData: unknown;
  try {
    clientData = JSON.parse(fromUtf8(clientDataJSON));
  } catch {
    throw new AssertionRejected("the browser's client data is not JSON");
  }
  const { type, challenge, origin, crossOrigin } = (clientData ?? {}) as Record<string, unknown>;
  if (type !== "webauthn.get") throw new AssertionRejected("the client data is not for a sign-in");
  if (challenge !== b64uEncode(expected.challenge)) throw new AssertionRejected("the answer is for another challenge");
  if (origin !== expected.origin) throw new AssertionRejected("the answer was made for another page");
  if (crossOrigin === true) throw new AssertionRejected("the answer was made inside another site's frame");
}

async function verifySignature(record: PasskeyRecord, signed: Uint8Array, signature: Uint8Array): Promise<boolean> {
  const key = (algorithm: AlgorithmIdentifier | EcKeyImportParams | RsaHashedImportParams) =>
    crypto.subtle.importKey("spki", buf(record.publicKey), algorithm, false, ["verify"]);
  try {
    switch (record.algorithm) {
      case ES256: {
        // WebAuthn signs ECDSA as ASN.1 DER (§6.5.6); WebCrypto verifies r ‖ s.
        const raw = ecdsaDerToRaw(signature, 32);
        const ecdsa = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
        return await crypto.subtle.verify(ecdsa, await key(ecdsa), buf(raw), buf(signed));
      }
      case EDDSA:
        return await crypto.subtle.verify("Ed25519", await key("Ed25519"), buf(signature), buf(signed));
      case RS256: {
        const rsa = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
        return await crypto.subtle.verify(rsa, await key(rsa), buf(signature), buf(signed));
      }
      default:
        throw new AssertionRejected(`the passkey uses an unknown algorithm (${String(record.algorithm)})`);
    }
  } catch (error) {
    if (error instanceof AssertionRejected) throw error;
    return false; // a malformed key or signature (DataError): it does not verify
  }
}

/**
 * An ECDSA signature as DER `SEQUENCE { INTEGER r, INTEGER s }` (SEC 1 §C.8) → r ‖ s, each left-padded to
 * `size` bytes. Strict: short-form lengths only (a P-256 signature is at most 72 bytes), no trailing bytes,
 * minimal integers.
 */
export function ecdsaDerToRaw(der: Uint8Array, size: number): Uint8Array {
  const fail = (): never => {
    throw new AssertionRejected("the passkey's signature is not a DER ECDSA signature");
  };
  if (der[0] !== 0x30 || der[1] !== der.length - 2) fail();
  const out = new Uint8Array(2 * size);
  let at = 2;
  for (const half of [0, 1]) {
    if (der[at] !== 0x02) fail();
    const length = der[at + 1] ?? 0;
    let value = der.subarray(at + 2, at + 2 + length);
    if (length === 0 || value.length !== length || length >= 0x80) fail();
    if ((value[0] ?? 0) & 0x80) fail(); // negative
    if (value[0] === 0 && length > 1 && !((value[1] ?? 0) & 0x80)) fail(); // not minimal
    if (value[0] === 0) value = value.subarray(1);
    if (value.length > size) fail();
    out.set(value, half * size + size - value.length);
    at += 2 + length;
  }
  if (at !== der.length) fail();
  return out;
}
