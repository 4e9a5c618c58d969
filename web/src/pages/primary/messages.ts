/** Plain-words texts for every refusal the primary can meet while linking (linking.md §3.3, §7.5). */
import { LinkCodeError } from "../../link/qr";
import { TooManyDevices } from "../../link/grant";
import { serverRefusal } from "../../link/wording";
import { ServerError, SocketClosed } from "../../net/socket";
import { CameraError } from "./scanner";

/** Refusals only this app meets (the linking ones come from the wording shared with the terminal). */
const APP_CODES: Record<string, string> = {
  not_authenticated: "This phone is not signed in to the server. Reload and try again.",
  device_unknown: "This phone is not a device of the account any more.",
  storage_full: "The server's disk is full, so nothing new can be saved. Try again later.",
  storage_unavailable: "The server cannot save anything right now. Try again later.",
};

export function describeError(error: unknown): string {
  if (error instanceof LinkCodeError || error instanceof TooManyDevices || error instanceof CameraError) return error.message;
  if (error instanceof ServerError) return serverRefusal(error.code) ?? APP_CODES[error.code] ?? `The server refused: ${error.message || error.code}.`;
  if (error instanceof SocketClosed) return "The connection to the server was lost. Try again.";
  return "Something went wrong. Try again.";
}
