/**
 * Signed envelopes (linking.md §4.1): {"payload": b64u(JSON bytes), "signature": b64u(sig)} with
 * sig = Ed25519(key, UTF-8(context) || 0x00 || payload_bytes). Verifiers check the exact payload bytes and
 * only then parse them; nothing is ever re-serialised.
 */
import { b64uDecode, b64uEncode } from "./base64";
import { concat, fromUtf8, utf8 } from "./bytes";
import { sign, verify } from "./ed25519";

export const Context = {
  deviceList: "lockstep/device-list/v1",
  deviceCertificate: "lockstep/device-certificate/v1",
  auth: "lockstep/auth/v1",
} as const;
export type ContextName = (typeof Context)[keyof typeof Context];

export interface Envelope {
  payload: string;
  signature: string;
}

/**
 * An envelope that does not check out: a signed envelope that is not an object of two b64u strings, whose
 * signature fails, or whose payload is not a JSON object; or a decrypted message envelope that is malformed
 * or disagrees with how the server routed it (messaging.md §5.2, lockstep.e2e.errors.EnvelopeError).
 */
export class EnvelopeError extends Error {
  override name = "EnvelopeError";
}

export function signedMessage(context: ContextName, payload: Uint8Array): Uint8Array {
  return concat(utf8(context), new Uint8Array([0]), payload);
}

export async function sealEnvelope(privateKey: CryptoKey, context: ContextName, payload: object): Promise<Envelope> {
  const bytes = utf8(JSON.stringify(payload));
  const signature = await sign(privateKey, signedMessage(context, bytes));
  return { payload: b64uEncode(bytes), signature: b64uEncode(signature) };
}

/** Shape check for untrusted input (server frames, decrypted grants). */
export function asEnvelope(value: unknown): Envelope {
  if (typeof value !== "object" || value === null) throw new EnvelopeError("envelope is not an object");
  const { payload, signature } = value as Record<string, unknown>;
  if (typeof payload !== "string" || typeof signature !== "string")
    throw new EnvelopeError("envelope needs string payload and signature");
  return { payload, signature };
}

/** Verifies under `publicKeyRaw` and returns the parsed payload object. */
export async function openEnvelope(
  value: unknown,
  context: ContextName,
  publicKeyRaw: Uint8Array,
): Promise<Record<string, unknown>> {
  const envelope = asEnvelope(value);
  let payload: Uint8Array;
  let signature: Uint8Array;
  try {
    payload = b64uDecode(envelope.payload);
    signature = b64uDecode(envelope.signature);
  } catch {
    throw new EnvelopeError("envelope is not base64url");
  }
  if (!(await verify(publicKeyRaw, signedMessage(context, payload), signature)))
    throw new EnvelopeError("bad signature");
  let parsed: unknown;
  try {
    parsed = JSON.parse(fromUtf8(payload));
  } catch {
    throw new EnvelopeError("payload is not UTF-8 JSON");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
    throw new EnvelopeError("payload is not a JSON object");
  return parsed as Record<string, unknown>;
}

/**
 * Raw auth signature (linking.md §4.1, §7.2):
 * Ed25519(device key, "lockstep/auth/v1" || 0x00 || challenge || UTF-8(origin)).
 */
export async function authSignature(deviceKey: CryptoKey, challenge: Uint8Array, origin: string): Promise<Uint8Array> {
  return sign(deviceKey, signedMessage(Context.auth, concat(challenge, utf8(origin))));
}
