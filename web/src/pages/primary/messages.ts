/** Plain-words texts for every refusal the primary can meet while linking (linking.md §3.3, §7.5). */
import { LinkCodeError } from "../../link/qr";
import { TooManyDevices } from "../../link/grant";
import { ServerError, SocketClosed } from "../../net/socket";
import { CameraError } from "./scanner";

const SERVER_CODES: Record<string, string> = {
  ref_expired: "This code has expired. Get a new code on the computer and scan again.",
  ref_used: "This code was already used. Get a new code on the computer and scan again.",
  ref_unknown: "Your server does not know this code. It may have been made up or belong to a closed page. Get a new code on the computer and scan again.",
  rate_limited: "Too many attempts. Wait a minute before scanning again.",
  too_many_devices: "This account already has 4 linked devices, the most allowed. Unlink one first.",
  companion_gone: "The computer closed its page or lost its connection. Get a new code and scan again.",
  forbidden: "Only this account's phone can link devices.",
  not_authenticated: "This phone is not signed in to the server. Reload and try again.",
  stale_device_list: "Your device list changed on the server meanwhile. Reload and try again.",
  invalid_device_list: "The server refused the new device list. Reload and try again.",
  bad_signature: "The server could not verify this phone's signature.",
  handle_taken: "That handle is already taken. Choose another.",
  invalid_handle: "Handles are 3–32 characters of a–z, 0–9, dot, dash or underscore, starting with a letter or digit.",
  device_unknown: "This phone is not a device of the account any more.",
  storage_full: "The server's disk is full, so nothing new can be saved. Try again later.",
  storage_unavailable: "The server cannot save anything right now. Try again later.",
};

export function describeError(error: unknown): string {
  if (error instanceof LinkCodeError || error instanceof TooManyDevices || error instanceof CameraError) return error.message;
  if (error instanceof ServerError) return SERVER_CODES[error.code] ?? `The server refused: ${error.message || error.code}.`;
  if (error instanceof SocketClosed) return "The connection to the server was lost. Try again.";
  return "Something went wrong. Try again.";
}
