/**
 * Number matching when the networks differ (linking.md §6.5): the browser twin of
 * src/lockstep/link/matching.py, checked against vectors/link-number.json.
 */
import { buf, concat, utf8 } from "../crypto/bytes";
import { codeRefusal } from "./wording";

/** The number typed on the primary is not the companion's: the link is declined (reason wrong_number). */
export class WrongNumber extends Error {
  override name = "WrongNumber";
  constructor() {
    super(codeRefusal("wrong_number"));
  }
}

const LABEL = concat(utf8("lockstep/link/number"), new Uint8Array([0]));

/** SHA-256("lockstep/link/number" 0x00 || ref || link_secret): first 8 bytes big-endian, mod 100, 2 digits. */
export async function matchingNumber(ref: Uint8Array, linkSecret: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", buf(concat(LABEL, ref, linkSecret))));
  let value = 0n;
  for (const byte of digest.slice(0, 8)) value = (value << 8n) | BigInt(byte);
  return (value % 100n).toString().padStart(2, "0");
}

/** Whether what the person typed (spaces ignored) is the companion's number. */
export async function numberMatches(typed: string, ref: Uint8Array, linkSecret: Uint8Array): Promise<boolean> {
  return typed.replace(/\s+/g, "") === (await matchingNumber(ref, linkSecret));
}
