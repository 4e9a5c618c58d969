/**
 * Fitting an Olm fan-out into requests (messaging.md §6.3), the twin of e2e/fanout.py: the split is
 * planned from an upper bound on each payload's size, computed from the plaintext's length alone, so
 * one-time keys are claimed per request only once the request is known to fit.
 *
 * An Olm message (libolm's format, as vodozemac and olm.ts write it) is its padded AES-256-CBC
 * ciphertext plus at most OLM_OVERHEAD_BOUND bytes of version, keys, chain index, lengths and MAC, pre-key
 * messages included. The bound on a payload's JSON is the Python client's (with spaces after separators),
 * so it also bounds the browser's compact JSON.stringify.
 */

export const OLM_OVERHEAD_BOUND = 192;
const SENDER_KEY_CHARS = 43;
const EMPTY_PAYLOAD = '{"device_id": "", "type": "olm", "olm_type": 0, "sender_key": "", "ciphertext": ""}'.length;

/** One copy alone does not fit a request: the plaintext is too long to send this way. */
export class FanoutTooLarge extends Error {
  override name = "FanoutTooLarge";
}

/** The most bytes an Olm message of `plaintextSize` bytes takes, pre-key or normal. */
export function olmSizeBound(plaintextSize: number): number {
  return 16 * (Math.floor(plaintextSize / 16) + 1) + OLM_OVERHEAD_BOUND;
}

/** The most characters one Olm payload object takes in a request's JSON, its list separator included. */
export function payloadSizeBound(deviceId: string, plaintextSize: number): number {
  const ciphertextChars = Math.ceil((4 * olmSizeBound(plaintextSize)) / 3);
  return EMPTY_PAYLOAD + JSON.stringify(deviceId).length - 2 + SENDER_KEY_CHARS + ciphertextChars + 2;
}

/** Splits `deviceIds` (in order) into as few consecutive requests as fit: each request's payloads take at
 * most `budget` characters and number at most `maxPayloads`. */
export function planRequests(
  deviceIds: readonly string[],
  plaintextSize: number,
  budget: number,
  maxPayloads: number,
): string[][] {
  const requests: string[][] = [];
  let current: string[] = [];
  let used = 0;
  for (const deviceId of deviceIds) {
    const size = payloadSizeBound(deviceId, plaintextSize);
    if (size > budget) throw new FanoutTooLarge("one copy of this message is larger than a request may be");
    if (current.length && (used + size > budget || current.length === maxPayloads)) {
      requests.push(current);
      current = [];
      used = 0;
    }
    current.push(deviceId);
    used += size;
  }
  if (current.length) requests.push(current);
  return requests;
}
