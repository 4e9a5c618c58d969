/**
 * Every error code the server replies with: the TypeScript twin of `ErrorCode` in
 * src/lockstep/server/errors.py (linking.md §7.5, messaging.md §7.6 and §9.3). tests/web/test_web_protocol.py
 * checks that the two lists are the same, so a code added on one side only fails the tests.
 */
export const ERROR_CODES = [
  // Any request.
  "bad_request",
  "unknown_op",
  "not_authenticated",
  "forbidden",
  "rate_limited",
  "unavailable",
  "storage_full",
  "internal_error",
  "unknown_host",
  // Accounts and devices.
  "handle_taken",
  "invalid_handle",
  "bad_signature",
  "stale_device_list",
  "invalid_device_list",
  "device_unknown",
  // Linking.
  "ref_unknown",
  "ref_expired",
  "ref_used",
  "too_many_devices",
  "companion_gone",
  // Messaging.
  "account_unknown",
  "group_unknown",
  "devices_changed",
  "stranger_limit",
  // Media HTTP.
  "too_large",
  "quota_exceeded",
  "media_unknown",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/**
 * What a refusal's code is when it is none of ERROR_CODES (a newer server): typed apart, so comparing a
 * code with a string that is not a real code fails to compile.
 */
export const UNRECOGNISED = "unrecognised";
export type ReceivedCode = ErrorCode | typeof UNRECOGNISED;

const KNOWN: ReadonlySet<string> = new Set(ERROR_CODES);

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === "string" && KNOWN.has(code);
}
