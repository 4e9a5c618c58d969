/**
 * The app lock's passkey (docs/protocol/linking.md §11.1): registered on this phone's platform
 * authenticator with user verification required, then asked for with a fresh challenge and checked here
 * (./assertion.ts). The browser's WebAuthn calls are the only I/O; the server is never involved.
 */
import { buf, randomBytes } from "../crypto/bytes";
import { ALGORITHMS, type Assertion, AssertionRejected, type PasskeyRecord, authenticatorFlags } from "./assertion";

const TIMEOUT_MS = 120_000;

/** An IPv4 or bracketed IPv6 host: WebAuthn refuses IP addresses as relying-party ids. */
function isIpAddress(hostname: string): boolean {
  return /^[0-9.]+$/.test(hostname) || hostname.startsWith("[");
}

/**
 * Whether this page can use a passkey on this phone: a secure context whose host is a name (WebAuthn
 * needs a domain as its relying-party id, so `https://192.168.1.5/app` cannot) and a platform
 * authenticator that verifies the user (a fingerprint, a face, the screen lock).
 */
export async function passkeyAvailable(): Promise<boolean> {
  if (!window.isSecureContext || isIpAddress(location.hostname)) return false;
  if (typeof PublicKeyCredential === "undefined") return false;
  try {
    return await PublicKeyCredential.isUserVerifyingPlatformAuthenticatorAvailable();
  } catch {
    return false;
  }
}

/** Registers a passkey for the app lock of `user` and returns what must be kept to check it later. */
export async function registerPasskey(user: {
  id: Uint8Array;
  name: string;
  displayName: string;
}): Promise<PasskeyRecord> {
  const rpId = location.hostname;
  const credential = await navigator.credentials.create({
    publicKey: {
      rp: { id: rpId, name: "Lockstep app lock" },
      user: { id: buf(user.id), name: user.name, displayName: user.displayName },
      challenge: buf(randomBytes(32)), // nothing to prove to anyone: the key is what we keep
      pubKeyCredParams: ALGORITHMS.map((alg) => ({ type: "public-key" as const, alg })),
      authenticatorSelection: {
        authenticatorAttachment: "platform",
        userVerification: "required",
        residentKey: "preferred",
      },
      attestation: "none",
      timeout: TIMEOUT_MS,
    },
  });
  if (!(credential instanceof PublicKeyCredential)) throw new AssertionRejected("no passkey was made");
  const response = credential.response as AuthenticatorAttestationResponse;
  const publicKey = response.getPublicKey();
  if (publicKey === null) throw new AssertionRejected("the passkey uses an algorithm this browser cannot read");
  if (!authenticatorFlags(new Uint8Array(response.getAuthenticatorData())).userVerified)
    throw new AssertionRejected("the phone did not check that it is you");
  return {
    credentialId: new Uint8Array(credential.rawId),
    publicKey: new Uint8Array(publicKey),
    algorithm: response.getPublicKeyAlgorithm(),
    rpId,
  };
}

/** Asks for the passkey of `record` with a fresh challenge; what came back, for verifyAssertion. */
export async function askPasskey(record: PasskeyRecord, challenge: Uint8Array): Promise<Assertion> {
  const credential = await navigator.credentials.get({
    publicKey: {
      challenge: buf(challenge),
      rpId: record.rpId,
      allowCredentials: [{ type: "public-key", id: buf(record.credentialId) }],
      userVerification: "required",
      timeout: TIMEOUT_MS,
    },
  });
  if (!(credential instanceof PublicKeyCredential)) throw new AssertionRejected("no passkey answered");
  const response = credential.response as AuthenticatorAssertionResponse;
  return {
    credentialId: new Uint8Array(credential.rawId),
    clientDataJSON: new Uint8Array(response.clientDataJSON),
    authenticatorData: new Uint8Array(response.authenticatorData),
    signature: new Uint8Array(response.signature),
  };
}
