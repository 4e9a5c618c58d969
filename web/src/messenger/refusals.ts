/** Plain-words texts for the server's refusals a messenger can meet (messaging.md §7.6, §9.3). */
const REFUSALS: Record<string, string> = {
  account_unknown: "There is no such account on this server.",
  group_unknown: "You are no longer in this group.",
  forbidden: "You are not allowed to do that in this group.",
  rate_limited: "Too many requests; wait a minute.",
  devices_changed: "The contact's devices changed; try again.",
  stranger_limit: "They have not written to you yet, and your earlier messages are still unread. Send more once they read them or reply.",
  quota_exceeded: "This device has uploaded all the files the server allows for now. Try again later.",
  storage_full: "The server's disk is full, so nothing new can be saved. Try again later; what you already have is safe.",
  storage_unavailable: "The server cannot save anything right now. Try again later.",
};

/** The text for a refusal code, if it is one people should read as such. */
export function refusalText(code: string): string | undefined {
  return REFUSALS[code];
}
