/**
 * The app lock's PIN, for phones without a platform authenticator (docs/protocol/linking.md §11.2): kept
 * only as a salted PBKDF2-SHA256 hash, and guarded by a back-off that the stored record carries, so a
 * reload does not reset it.
 *
 * Pure apart from WebCrypto: time is a parameter (`now`, milliseconds), so the back-off is tested with a
 * clock the test moves.
 */
import { buf, equalBytes, randomBytes, utf8 } from "../crypto/bytes";

/** OWASP's 2023 figure for PBKDF2-HMAC-SHA256; about a third of a second on a phone. */
export const PIN_ITERATIONS = 600_000;
export const PIN_MIN_DIGITS = 6;
/** Wrong PINs allowed before the first wait. */
export const FREE_ATTEMPTS = 5;
export const FIRST_WAIT_S = 30;
/** The wait doubles with each wrong PIN after the free ones, up to an hour (the owner must get back in). */
export const MAX_WAIT_S = 3600;

export interface PinRecord {
  salt: Uint8Array;
  hash: Uint8Array;
  iterations: number;
  /** Wrong PINs since the last right one. */
  failures: number;
  /** When the last wrong PIN was typed (ms), the start of the wait it earned. */
  lastFailureAt: number;
}

/** Why `pin` cannot be a PIN, or null if it can. */
export function pinProblem(pin: string): string | null {
  if (!/^[0-9]*$/.test(pin)) return "A PIN is digits only.";
  if (pin.length < PIN_MIN_DIGITS) return `A PIN has at least ${String(PIN_MIN_DIGITS)} digits.`;
  return null;
}

async function pbkdf2(pin: string, salt: Uint8Array, iterations: number): Promise<Uint8Array> {
  const material = await crypto.subtle.importKey("raw", buf(utf8(pin)), "PBKDF2", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-256", salt: buf(salt), iterations },
    material,
    256,
  );
  return new Uint8Array(bits);
}

/** A new record for `pin` (which must pass pinProblem). */
export async function makePin(pin: string, iterations = PIN_ITERATIONS): Promise<PinRecord> {
  if (pinProblem(pin) !== null) throw new RangeError("not a PIN");
  const salt = randomBytes(16);
  return { salt, hash: await pbkdf2(pin, salt, iterations), iterations, failures: 0, lastFailureAt: 0 };
}

/** Seconds `failures` wrong PINs make the person wait after the last of them. */
export function waitAfter(failures: number): number {
  if (failures < FREE_ATTEMPTS) return 0;
  return Math.min(MAX_WAIT_S, FIRST_WAIT_S * 2 ** (failures - FREE_ATTEMPTS));
}

/**
 * Whole seconds left before another PIN may be tried (0: now). A clock that went back before the last
 * failure restarts the whole wait rather than ending it.
 */
export function secondsToWait(record: PinRecord, now: number): number {
  const wait = waitAfter(record.failures) * 1000;
  if (wait === 0) return 0;
  const passed = now - record.lastFailureAt;
  if (passed < 0) return Math.ceil(wait / 1000);
  return Math.max(0, Math.ceil((wait - passed) / 1000));
}

export type PinCheck =
  | { result: "right"; record: PinRecord }
  | { result: "wrong"; record: PinRecord; wait: number; freeLeft: number }
  | { result: "wait"; record: PinRecord; wait: number };

/**
 * Checks `pin` against `record` at `now`. While a wait runs the PIN is not even hashed ("wait"), so
 * guesses typed then cost nothing and tell nothing. The returned record must be stored either way.
 */
export async function checkPin(record: PinRecord, pin: string, now: number): Promise<PinCheck> {
  const wait = secondsToWait(record, now);
  if (wait > 0) return { result: "wait", record, wait };
  if (equalBytes(await pbkdf2(pin, record.salt, record.iterations), record.hash))
    return { result: "right", record: { ...record, failures: 0, lastFailureAt: 0 } };
  const failed = { ...record, failures: record.failures + 1, lastFailureAt: now };
  return {
    result: "wrong",
    record: failed,
    wait: waitAfter(failed.failures),
    freeLeft: Math.max(0, FREE_ATTEMPTS - failed.failures),
  };
}
