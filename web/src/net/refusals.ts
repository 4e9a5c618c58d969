/**
 * What a person reads for each of the server's refusal codes (./errorCodes.ts), in one place for every page.
 *
 *   refusalText("ref_used", "linking")        // the sentence, or undefined if the code has none
 *   describeRefusal(error, "messaging")       // the sentence, or the server's own message
 *
 * A few codes read differently depending on what the person was doing (`rate_limited` while scanning is
 * not `rate_limited` while chatting), hence the two contexts. The linking sentences are the wording the
 * terminal primary also uses (src/lockstep/link/wording.json, linking.md §3.3, §7.5).
 */
import { SERVER_REFUSALS } from "../link/wording";
import { type ErrorCode, isErrorCode } from "./errorCodes";
import type { ServerError } from "./socket";

export type RefusalContext = "linking" | "messaging";

type Sentences = Partial<Record<ErrorCode, string>>;

/** Every code of the shared linking wording must be a real error code, or this does not compile. */
const SHARED_LINKING: { [Code in keyof typeof SERVER_REFUSALS]: Code extends ErrorCode ? string : never } =
  SERVER_REFUSALS;

const STORAGE_UNAVAILABLE = "The server cannot save anything right now. Try again later.";

const SENTENCES: Record<RefusalContext, Sentences> = {
  linking: {
    ...SHARED_LINKING,
    not_authenticated: "This phone is not signed in to the server. Reload and try again.",
    device_unknown: "This phone is not a device of the account any more.",
    storage_full: "The server's disk is full, so nothing new can be saved. Try again later.",
    unavailable: STORAGE_UNAVAILABLE,
  },
  messaging: {
    account_unknown: "There is no such account on this server.",
    group_unknown: "You are no longer in this group.",
    forbidden: "You are not allowed to do that in this group.",
    rate_limited: "Too many requests; wait a minute.",
    devices_changed: "The contact's devices changed; try again.",
    stranger_limit:
      "They have not written to you yet, and your earlier messages are still unread. " +
      "Send more once they read them or reply.",
    quota_exceeded: "This device has uploaded all the files the server allows for now. Try again later.",
    storage_full:
      "The server's disk is full, so nothing new can be saved. Try again later; what you already have is safe.",
    unavailable: STORAGE_UNAVAILABLE,
  },
};

/** The sentence for a refusal code met in `context`, if it is one people should read as such. */
export function refusalText(code: unknown, context: RefusalContext): string | undefined {
  return isErrorCode(code) ? SENTENCES[context][code] : undefined;
}

/** The sentence for a refusal, or else the server's own message (or code) after "The server refused". */
export function describeRefusal(error: ServerError, context: RefusalContext): string {
  return refusalText(error.code, context) ?? `The server refused: ${error.message || error.received}.`;
}
