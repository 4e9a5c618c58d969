/** The messenger's own error, and the one place any error becomes words for the person. */
import { E2EError } from "../e2e";
import { describeRefusal } from "../net/refusals";
import { ServerError } from "../net/socket";
import { KeyBundleError } from "./keys";
import { MediaError } from "./media";

/** Something went wrong that the person should read (a missing account, a key that changed…). */
export class MessengerError extends Error {
  override name = "MessengerError";
}

export function describe(error: unknown): string {
  if (error instanceof MessengerError || error instanceof KeyBundleError || error instanceof MediaError)
    return error.message;
  if (error instanceof ServerError) return describeRefusal(error, "messaging");
  if (error instanceof E2EError) return `Could not decrypt: ${error.name}`;
  if (error instanceof Error && error.name === "SocketClosed") return "The connection to the server was lost.";
  return error instanceof Error ? error.name : "Something went wrong";
}
